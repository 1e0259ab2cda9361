"""C2PA content credentials: the shot's provenance signed into the media file, in the industry's format.

A signed file carries a C2PA manifest (read by any C2PA tool: ``c2patool``, Adobe's Content
Credentials site, this project's ``continuity verify``) with:
- ``c2pa.actions``: ``c2pa.created`` with digital source type *trained algorithmic media*, the
  generator as software agent and its model id;
- ``org.continuity.shot``: store, library, story, shot, seed, prompt, watermark id, the blueprints
  used (entity ids, names, reference sha256s), their consent state, any consent override and the
  continuity guard's verdict where the manifest has one;
- ingredients: the registered references that conditioned the shot (``inputTo``), with their sha256.

The signing identity is the studio's own certificate chain and private key, read from the
environment (never from or into the store): ``CONTINUITY_SIGN_CERT`` (PEM chain, end-entity first),
``CONTINUITY_SIGN_KEY`` (PEM private key), ``CONTINUITY_SIGN_ALG`` (es256 default; es384, es512,
ps256, ps384, ps512, ed25519) and ``CONTINUITY_SIGN_TSA`` (an RFC 3161 time-stamp authority URL).
A reader trusts the signer when its chain ends in a CA of ``CONTINUITY_TRUST_ANCHORS`` (a PEM
file); without anchors a file still verifies (signature and content hashes) but is "untrusted".
The C2PA SDK requires an end-entity certificate that is not a CA, with key usage digitalSignature
and an extended key usage such as emailProtection or documentSigning, issued by a CA (self-signed
end-entity certificates are refused).
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from memstore.errors import InvalidInputError, MissingExtraError
from memstore.files import publish

from .manifest import ShotManifest, software_versions

TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
SHOT_ASSERTION = "org.continuity.shot"
STORY_ASSERTION = "org.continuity.story"
ALGORITHMS = ("es256", "es384", "es512", "ps256", "ps384", "ps512", "ed25519")
MIME_TYPES = {".mp4": "video/mp4", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}
ENV_CERT, ENV_KEY, ENV_ALG, ENV_TSA = (
    "CONTINUITY_SIGN_CERT",
    "CONTINUITY_SIGN_KEY",
    "CONTINUITY_SIGN_ALG",
    "CONTINUITY_SIGN_TSA",
)
ENV_TRUST = "CONTINUITY_TRUST_ANCHORS"  # PEM file of CA certificates whose signers a reader trusts
TRUST_CODES = ("signingCredential.untrusted", "signingCredential.ocsp")
CredentialState = Literal["valid", "tampered", "none"]

__all__ = [
    "ALGORITHMS",
    "SHOT_ASSERTION",
    "STORY_ASSERTION",
    "TRAINED_ALGORITHMIC_MEDIA",
    "CredentialCheck",
    "Ingredient",
    "SigningIdentity",
    "read_credentials",
    "shot_definition",
    "sign_file",
    "story_definition",
]


def _c2pa() -> Any:
    try:
        import c2pa
    except ImportError:
        raise MissingExtraError(
            "'c2pa-python' is not installed; install the extra: pip install 'continuity[provenance]'"
        ) from None
    return c2pa


@dataclass(frozen=True)
class SigningIdentity:
    """Who signs: a PEM certificate chain and private key (kept in memory, never stored)."""

    cert_chain: bytes
    private_key: bytes = field(repr=False)
    alg: str = "es256"
    tsa_url: str | None = None

    @classmethod
    def from_files(
        cls,
        cert: str | os.PathLike[str],
        key: str | os.PathLike[str],
        alg: str = "es256",
        tsa_url: str | None = None,
    ) -> SigningIdentity:
        alg = alg.strip().lower()
        if alg not in ALGORITHMS:
            raise InvalidInputError(f"signing algorithm {alg!r} is unknown; use one of {', '.join(ALGORITHMS)}")
        return cls(_pem(cert, "certificate"), _pem(key, "private key"), alg, tsa_url or None)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SigningIdentity | None:
        """The identity the environment names, or None when neither path is set (unsigned)."""
        env = os.environ if env is None else env
        cert, key = env.get(ENV_CERT), env.get(ENV_KEY)
        if not cert and not key:
            return None
        if not cert or not key:
            missing = ENV_KEY if cert else ENV_CERT
            raise InvalidInputError(f"{missing} is not set; signing needs both {ENV_CERT} and {ENV_KEY} (PEM paths)")
        return cls.from_files(cert, key, env.get(ENV_ALG) or "es256", env.get(ENV_TSA))

    def signer(self) -> Any:
        c2pa = _c2pa()
        info = c2pa.C2paSignerInfo(self.alg.encode(), self.cert_chain, self.private_key, self.tsa_url)
        try:
            return c2pa.Signer.from_info(info)
        except c2pa.C2paError as exc:
            raise InvalidInputError(f"the signing certificate or key was refused: {_first(exc)}") from None


def _pem(path: str | os.PathLike[str], what: str) -> bytes:
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"signing {what} {str(p)!r} does not exist; point {ENV_CERT}/{ENV_KEY} at PEM files")
    data = p.read_bytes()
    if b"-----BEGIN" not in data:
        raise InvalidInputError(f"signing {what} {p.name!r} is not PEM; export it as PEM (-----BEGIN ...)")
    return data


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


@dataclass(frozen=True)
class Ingredient:
    """A parent of the signed file: a registered reference image, or a shot of a story."""

    title: str
    data: bytes
    mime: str
    sha256: str | None
    relationship: str = "inputTo"  # inputTo: conditioned it; componentOf: part of it

    def definition(self) -> dict[str, Any]:
        meta = {"org.continuity.sha256": self.sha256} if self.sha256 else {}
        return {"title": self.title, "relationship": self.relationship, "metadata": meta}


# --- what is asserted -------------------------------------------------------------------------------


def _claim_generator() -> list[dict[str, str]]:
    return [{"name": "continuity", "version": software_versions().get("continuity", "unknown")}]


def shot_assertion(
    manifest: ShotManifest, consent: Mapping[str, bool | None], where: Mapping[str, str]
) -> dict[str, Any]:
    """The ``org.continuity.shot`` data: everything a receiver needs to know what made the shot.

    ``consent`` maps entity id -> its recorded consent at generation time; ``where`` names the
    store and library the shot's record lives in."""
    refs: dict[str, list[str]] = {}
    for ref in manifest.references:
        if ref.entity_id and ref.sha256:
            refs.setdefault(ref.entity_id, []).append(ref.sha256)
    data: dict[str, Any] = {
        **dict(where),
        "story_id": manifest.story_id,
        "shot_index": manifest.shot_index,
        "input_hash": manifest.input_hash,
        "prompt": manifest.prompt,
        "enriched_prompt": manifest.enriched_prompt,
        "generator": manifest.generator,
        "model_id": manifest.model_id,
        "seed": manifest.seed,
        "watermark": manifest.watermark,
        "blueprints": [
            {
                "entity_id": b.entity_id,
                "name": b.name,
                "kind": b.kind,
                "consent": consent.get(b.entity_id),
                "reference_sha256": refs.get(b.entity_id, []),
            }
            for b in manifest.blueprints
        ],
        "consent_overrides": [o.model_dump(mode="json") for o in manifest.consent_overrides],
    }
    guard = getattr(manifest, "guard", None)  # the continuity guard's verdict, where the manifest has one
    if guard is not None:
        data["guard"] = guard.model_dump(mode="json") if hasattr(guard, "model_dump") else guard
    return data


def _actions(agent: str, model_id: str | None, description: str) -> dict[str, Any]:
    action: dict[str, Any] = {
        "action": "c2pa.created",
        "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
        "softwareAgent": {"name": agent, **({"version": model_id} if model_id else {})},
        "description": description,
    }
    return {"label": "c2pa.actions", "data": {"actions": [action]}}


def shot_definition(
    manifest: ShotManifest, title: str, consent: Mapping[str, bool | None], where: Mapping[str, str]
) -> dict[str, Any]:
    """The C2PA manifest definition of one shot file (its MP4 or a keyframe)."""
    return {
        "claim_generator_info": _claim_generator(),
        "title": title,
        "assertions": [
            _actions(manifest.generator, manifest.model_id, f"shot {manifest.shot_index} of story {manifest.story_id}"),
            {"label": SHOT_ASSERTION, "data": shot_assertion(manifest, consent, where)},
        ],
    }


def story_definition(story_id: str, title: str, shots: Iterable[Mapping[str, Any]], generator: str) -> dict[str, Any]:
    """The C2PA manifest definition of a story MP4; ``shots`` lists each shot's index, watermark
    and entities (its files are the ingredients)."""
    return {
        "claim_generator_info": _claim_generator(),
        "title": title,
        "assertions": [
            _actions(generator, None, f"story {story_id}, shots concatenated"),
            {"label": STORY_ASSERTION, "data": {"story_id": story_id, "shots": list(shots)}},
        ],
    }


# --- signing and reading ----------------------------------------------------------------------------


def _mime(path: Path) -> str:
    mime = MIME_TYPES.get(path.suffix.lower())
    if mime is None:
        raise InvalidInputError(f"cannot sign {path.name!r}: known types are {', '.join(sorted(MIME_TYPES))}")
    return mime


def _context() -> Any:
    # a thumbnail per file and per ingredient doubles the signing time and is not needed to verify
    return _c2pa().Context.from_dict({"builder": {"thumbnail": {"enabled": False}}})


def sign_file(
    path: str | os.PathLike[str],
    definition: Mapping[str, Any],
    identity: SigningIdentity,
    ingredients: Iterable[Ingredient] = (),
) -> Path:
    """Sign ``path`` in place (a temp file renamed over it: a reader never sees half a file)."""
    c2pa = _c2pa()
    p = Path(path)
    mime = _mime(p)
    if not p.is_file():
        raise InvalidInputError(f"cannot sign {str(p)!r}: it does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{p.stem}.", suffix=p.suffix, dir=p.parent)
    os.close(fd)
    try:
        builder = c2pa.Builder(dict(definition), _context())
        for ingredient in ingredients:
            builder.add_ingredient(ingredient.definition(), ingredient.mime, io.BytesIO(ingredient.data))
        with open(p, "rb") as source, open(tmp, "w+b") as dest:
            builder.sign(identity.signer(), mime, source, dest)
        publish(tmp, p)
    except c2pa.C2paError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise InvalidInputError(f"signing {p.name!r} failed: {_first(exc)}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


@dataclass
class CredentialCheck:
    """What a file's content credentials say: ``valid`` (signature and hashes match), ``tampered``
    (a manifest whose signature or content hash fails) or ``none`` (no manifest)."""

    state: CredentialState
    manifest: dict[str, Any] | None = None  # the active manifest as the SDK reads it
    failures: list[str] = field(default_factory=list)  # C2PA failure codes with explanations
    validation_state: str | None = None  # the SDK's word: Valid, Trusted or Invalid
    # the signer chains to a trust anchor (CONTINUITY_TRUST_ANCHORS); integrity does not depend on it
    trusted: bool = False

    def assertion(self, label: str) -> dict[str, Any] | None:
        for item in (self.manifest or {}).get("assertions", []):
            if item.get("label") == label:
                return dict(item.get("data") or {})
        return None

    @property
    def signer(self) -> dict[str, Any]:
        return dict((self.manifest or {}).get("signature_info") or {})

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "trusted": self.trusted,
            "validation_state": self.validation_state,
            "failures": self.failures,
            "signer": self.signer,
            "shot": self.assertion(SHOT_ASSERTION),
            "story": self.assertion(STORY_ASSERTION),
        }


def _failures(results: Mapping[str, Any] | None) -> list[str]:
    out = []
    for part in ((results or {}).get("activeManifest") or {}, *((results or {}).get("ingredientDeltas") or [])):
        for item in (part.get("failure") or []) if isinstance(part, dict) else []:
            out.append(f"{item.get('code')}: {item.get('explanation', '')}".strip())
    return out


def _is_trust_only(failure: str) -> bool:
    """An unknown or untrusted signer says who signed is not vouched for, not that bytes changed."""
    return failure.startswith(TRUST_CODES)


def _reader_context() -> Any:
    """Settings for reading: trust anchors (PEM) from CONTINUITY_TRUST_ANCHORS when set."""
    anchors = os.environ.get(ENV_TRUST)
    if not anchors:
        return None
    pem = _pem(anchors, "trust anchors").decode("utf-8")
    return _c2pa().Context.from_dict({"trust": {"trust_anchors": pem}, "verify": {"verify_trust": True}})


def read_credentials(path: str | os.PathLike[str]) -> CredentialCheck:
    """Read and validate the C2PA manifest of a file: ``tampered`` when a signature or hash fails
    (an untrusted signer alone is not tampering: see ``trusted``)."""
    c2pa = _c2pa()
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"{str(p)!r} does not exist")
    mime = MIME_TYPES.get(p.suffix.lower())
    try:
        with open(p, "rb") as f:
            reader = c2pa.Reader(mime, f, context=_reader_context())
            state = reader.get_validation_state()
            manifest = reader.get_active_manifest()
            results = reader.get_validation_results()
    except c2pa.C2paError as exc:
        if "ManifestNotFound" in type(exc).__name__ or "ManifestNotFound" in str(exc):
            return CredentialCheck("none")
        # a manifest that cannot even be parsed was damaged: tampered, not absent
        return CredentialCheck("tampered", failures=[_first(exc)])
    failures = _failures(results)
    integrity = [f for f in failures if not _is_trust_only(f)]
    valid = state in ("Valid", "Trusted") and not integrity
    trusted = state == "Trusted" or (valid and bool(os.environ.get(ENV_TRUST)) and not failures)
    return CredentialCheck("valid" if valid else "tampered", manifest, failures, state, trusted)
