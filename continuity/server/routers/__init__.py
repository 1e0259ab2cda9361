"""One ``APIRouter`` per resource; :func:`continuity.server.app.create_app` includes them in this order
(the ``{lib:path}`` routes match first-come, so the order is part of the contract)."""
