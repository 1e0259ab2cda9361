"""Retrieval: blueprints for one shot of a library."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from memstore.validation import MAX_PROMPT_CHARS
from retrieval import RetrievalResult, ShotQuery

from ..shapes import add_image_urls
from ..state import LibraryDep, StateDep

router = APIRouter(tags=["retrieval"])
# Each name costs a lookup under the library's query lock: a list of 60,000 is a denial of service.
MAX_QUERY_LIST = 256


class QueryBody(BaseModel):
    """A shot's request for blueprints (the fields of ``retrieval.ShotQuery`` a client may set)."""

    model_config = ConfigDict(extra="forbid")
    prompt: str = Field(..., max_length=MAX_PROMPT_CHARS)
    k: int = Field(8, ge=1, le=1000)
    cast: list[str] | None = Field(None, max_length=MAX_QUERY_LIST)
    location: str | None = None
    cut: bool = True
    era: str | None = None
    story_id: str | None = None
    shot_index: int | None = Field(None, ge=0, lt=2**31)
    references_per_entity: int = Field(2, ge=0, le=100)
    kinds: list[str] | None = Field(None, max_length=MAX_QUERY_LIST)
    tags: list[str] = Field(default_factory=list, max_length=MAX_QUERY_LIST)
    require_consent: bool = False

    @field_validator("prompt", "location", "era", "story_id", "cast", "kinds", "tags")
    @classmethod
    def _valid_text(cls, value: str | list[str] | None) -> str | list[str] | None:
        # JSON can carry lone surrogates ("\ud800"); no table or index can hold them.
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str):
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    raise ValueError("contains a lone surrogate (invalid Unicode); send valid text") from None
        return value

    def to_shot_query(self) -> ShotQuery:
        return ShotQuery(
            prompt=self.prompt,
            k=self.k,
            cast=tuple(self.cast) if self.cast is not None else None,
            location=self.location,
            cut=self.cut,
            era=self.era,
            story_id=self.story_id,
            shot_index=self.shot_index,
            references_per_entity=self.references_per_entity,
            kinds=tuple(self.kinds) if self.kinds is not None else None,
            tags=tuple(self.tags),
            require_consent=self.require_consent,
        )


def retrieve(state: StateDep, library: LibraryDep, shot: ShotQuery) -> RetrievalResult:
    retriever, lock = state.retriever(library)
    with lock:  # one query at a time per library: the retriever's hot index syncs in place
        return retriever.retrieve(shot, context=None)


@router.post("/libraries/{lib:path}/query")
def query(state: StateDep, library: LibraryDep, body: QueryBody) -> dict[str, Any]:
    """Retrieve blueprints for one shot: hits with scores, reasons and reference ids."""
    # Existence is checked here, after the body is validated: a bad body is a 422 for any library.
    state.require_existing(library)
    data = retrieve(state, library, body.to_shot_query()).to_json()
    for hit in data["hits"]:  # where a remote pipeline fetches each blueprint image
        add_image_urls(hit["references"], library.name)
    return data
