"""Fixtures of the story-loop tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def cast(library, photos):
    from continuity.drawn import forest_clearing, harbor_at_dusk

    library.register("Aria", "character", images=[photos["astronaut"]], description="a woman in an orange suit")
    library.register("Bram", "character", images=[photos["rocket"]], description="an old blacksmith")
    library.register("Harbor", "location", images=[harbor_at_dusk((320, 180))], description="harbor at dusk")
    library.register("Forest", "location", images=[forest_clearing((320, 180))], description="forest clearing")
    return library
