"""Request and response models of the HTTP API (pydantic v2), the schema of ``/openapi.json``.

Field names are camelCase on the wire (``minReward``, ``sessionId``); requests may also use the
snake_case spelling. Unknown request fields are refused (``422``), so a misspelt filter never
silently widens a search. Constraints (``k`` in 1..1000, at most 1000 vectors per batch,
finite numbers, rewards in [-1, 1]) live here, so the OpenAPI schema documents them; the
store's dimension is checked per request (it is not known when this module is imported).

The response models document the answers; the hot paths serialise records directly (see
:mod:`.app`), and the schema tests check the answers against these models.

>>> PatternSearchRequest.model_validate({"task": "parse dates", "minReward": 0.5}).min_reward
0.5
>>> PatternSearchRequest.model_validate({"task": "x", "min_reward": 0.5}).min_reward
0.5
>>> VectorSearchRequest.model_validate({"vector": [1.0, 0.0]}).k
5
"""

from __future__ import annotations

import math
import time
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

__all__ = [
    "MAX_BATCH",
    "MAX_CANDIDATES",
    "MAX_ID",
    "MAX_K",
    "JsonObject",
    "ContextWeight",
    "CypherRequest",
    "CypherResponse",
    "EpisodeHit",
    "EpisodeOut",
    "EpisodeSearchRequest",
    "EpisodeSearchResponse",
    "ForgetRequest",
    "ForgetResponse",
    "EpisodeStoreRequest",
    "EpisodeStored",
    "ErrorBody",
    "ErrorResponse",
    "FeedbackRequest",
    "FeedbackResponse",
    "HealthResponse",
    "PatternContextRequest",
    "PatternContextResponse",
    "PatternHit",
    "PatternOut",
    "PatternSearchRequest",
    "PatternSearchResponse",
    "PatternStoreRequest",
    "PatternStored",
    "ReadyResponse",
    "SkillHit",
    "SkillOut",
    "SkillSearchRequest",
    "SkillSearchResponse",
    "SkillStoreRequest",
    "SkillStored",
    "TrajectoryFeedbackRequest",
    "UpsertResponse",
    "VectorHit",
    "VectorItem",
    "VectorSearchRequest",
    "VectorSearchResponse",
    "VectorUpsertRequest",
    "finite_json",
]

#: Largest ``k`` a search accepts.
MAX_K = 1000
#: Most vectors one ``POST /vectors`` accepts.
MAX_BATCH = 1000
#: Largest record id (SQLite's INTEGER PRIMARY KEY is a signed 64-bit integer).
MAX_ID = 2**63 - 1
#: Longest vector accepted before the store's own dimension check.
MAX_DIM = 65536
#: Largest HNSW search breadth.
MAX_EF = 10000
#: Most candidates a re-ranked search fetches (they set the HNSW breadth, like ``ef``).
MAX_CANDIDATES = MAX_EF
#: Longest time to live / age a request may name: 100 years, in seconds.
MAX_TTL = 100 * 365.25 * 86400
#: Softmax temperatures accepted by re-ranking and context synthesis.
TEMPERATURE_RANGE = (1e-3, 1e3)

_Vector = list[float]


def finite_json(value: Any) -> Any:
    """Refuse NaN and infinities anywhere in a free-form JSON value (``allow_inf_nan=False``
    only covers fields typed as numbers; these come from ``NaN``/``Infinity`` literals).

    >>> finite_json({"a": [1.5, {"b": 2}]})
    {'a': [1.5, {'b': 2}]}
    >>> finite_json({"a": [float("nan")]})
    Traceback (most recent call last):
    ...
    ValueError: NaN and Infinity are not valid JSON numbers
    """
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, float):
            if not math.isfinite(v):
                raise ValueError("NaN and Infinity are not valid JSON numbers")
        elif isinstance(v, str):
            _valid_unicode(v)
        elif isinstance(v, dict):
            for key in v:
                _valid_unicode(key)
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return value


def _valid_unicode(text: str) -> None:
    """The rule for text in free-form JSON, keys included, as for the typed string fields: a
    lone surrogate (``"\\ud800"``) is not Unicode text."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("strings and keys must be valid Unicode text (a lone surrogate was "
                         f"found in {text.encode('utf-8', 'backslashreplace').decode()!r})"
                         ) from None


#: A free-form JSON object (metadata, ``where`` filters, Cypher parameters).
JsonObject = Annotated[dict[str, Any], AfterValidator(finite_json)]


class _Request(BaseModel):
    # strict: numbers are numbers, booleans booleans ("5", "0.1" and true are refused where a
    # number is expected; an int is still a valid float); unknown fields are refused
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid",
                              allow_inf_nan=False, strict=True)


class _Response(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


def _k(default: int) -> Any:
    return Field(default, ge=1, le=MAX_K, description=f"Number of hits, 1..{MAX_K}.")


def _vector(description: str) -> Any:
    return Field(None, min_length=1, max_length=MAX_DIM, description=description)


_EF = Field(None, ge=1, le=MAX_EF, description="HNSW search breadth (default: the store's).")
_THRESHOLD = Field(None, ge=-1.0, le=1.0, description="Minimum cosine similarity.")
_WHERE = Field(None, description='Metadata filter, e.g. {"lang": "py", "n": {"$gte": 2}} '
                                 "($eq $ne $gt $gte $lt $lte $in $nin $exists).")
_MIN_REWARD = Field(None, ge=-1.0, le=1.0, description="Only records with reward >= this.")
_REWARD = Field(0.0, ge=-1.0, le=1.0, description="Reward in [-1, 1].")
_ID = Field(None, ge=1, le=MAX_ID)
_PatternId = Annotated[int, Field(ge=1, le=MAX_ID)]
_ADAPT = Field(True, description="Search with the learned query adapter when learning is "
                                 "active (false: the raw query).")


def _temperature(default: float | None) -> Any:
    lo, hi = TEMPERATURE_RANGE
    return Field(default, ge=lo, le=hi,
                 description=f"Softmax temperature over cosine similarities, {lo:g}..{hi:g} "
                             "(lower: sharper).")


def _one_query(model: Any, text_field: str) -> Any:
    if (getattr(model, text_field) is None) == (model.vector is None):
        raise ValueError(f"give exactly one of '{text_field}' (text) or 'vector'")
    return model


class _TaskQuery(_Request):
    """A request whose query is exactly one of ``task`` (text) or ``vector``."""

    task: str | None = Field(None, min_length=1)
    vector: _Vector | None = _vector("Query vector (instead of task).")

    @model_validator(mode="after")
    def _task_or_vector(self) -> Any:
        return _one_query(self, "task")


# ---- requests -------------------------------------------------------------------------------
_DIVERSITY = Field(
    None, ge=0.0, le=1.0,
    description="0..1: pick the k hits from a wider candidate set by maximal marginal "
                "relevance (0 = similarity order; higher skips near-duplicates).")

_DIVERSE_CANDIDATES = Field(
    None, ge=1, le=MAX_CANDIDATES,
    description="Candidates to pick diverse hits from (>= k; default max(4k, 20)).")


class VectorSearchRequest(_Request):
    """``POST /vectors/search``: nearest stored vectors (patterns) to ``vector`` (or
    ``query``, the seed system's name for it: exactly one of the two)."""

    vector: _Vector | None = _vector("Query vector of the store's dimension.")
    query: _Vector | None = _vector("The same as vector (the seed system's contract).")
    k: int = _k(5)
    ef: int | None = _EF
    min_reward: float | None = _MIN_REWARD
    success_only: bool = False
    session_id: str | None = None
    where: JsonObject | None = _WHERE
    threshold: float | None = _THRESHOLD
    diversity: float | None = _DIVERSITY
    candidates: int | None = _DIVERSE_CANDIDATES

    @model_validator(mode="after")
    def _vector_or_query(self) -> Any:
        if (self.vector is None) == (self.query is None):
            raise ValueError("give exactly one of 'vector' or 'query' (the same thing)")
        if self.vector is None:
            self.vector = self.query
        if self.candidates is not None and self.diversity is None:
            raise ValueError("candidates only applies with diversity")
        if self.candidates is not None and self.candidates < self.k:
            raise ValueError(f"candidates ({self.candidates}) must be >= k ({self.k})")
        return self


class VectorItem(_Request):
    """One vector of an upsert: an existing ``id`` is updated, anything else stored."""

    id: int | None = _ID
    vector: _Vector = Field(..., min_length=1, max_length=MAX_DIM)
    metadata: JsonObject | None = None
    task: str | None = Field(None, min_length=1,
                             description='Default for a new record: "vector <id>" when an id '
                                         'is given, else "vector".')


class VectorUpsertRequest(_Request):
    """``POST /vectors``: up to 1000 vectors, written all or nothing."""

    vectors: list[VectorItem] = Field(..., max_length=MAX_BATCH)


_TTL = Field(None, gt=0, le=MAX_TTL,
             description="Seconds until the record expires (invisible, then forgotten).")
_EXPIRES_AT = Field(None, description="When the record expires (epoch seconds).")


def _one_expiry(req: Any) -> Any:
    """``ttl`` or ``expiresAt``, not both; ``expiresAt`` in the future (a record stored
    already expired would answer its own store with 404)."""
    if req.ttl is not None and req.expires_at is not None:
        raise ValueError("give ttl or expiresAt, not both")
    if req.expires_at is not None and req.expires_at <= time.time():
        raise ValueError("expiresAt is in the past")
    return req


class _TaskRecordRequest(_Request):
    """The fields patterns and episodes share."""

    task: str = Field(..., min_length=1)
    embedding: _Vector | None = _vector("Explicit embedding (else the task is embedded).")
    reward: float = _REWARD
    success: bool = False
    session_id: str | None = None
    input: str | None = None
    output: str | None = None
    critique: str | None = None
    metadata: JsonObject | None = None
    ttl: float | None = _TTL
    expires_at: float | None = _EXPIRES_AT

    @model_validator(mode="after")
    def _expiry(self) -> _TaskRecordRequest:
        return _one_expiry(self)


class PatternStoreRequest(_TaskRecordRequest):
    """``POST /patterns/store``: the task is embedded unless ``embedding`` is given."""

    dedupe: float | None = Field(
        None, gt=0.0, le=1.0,
        description="Fold into a stored pattern at least this similar (cosine) instead of "
                    "adding one: its uses + 1, its reward the running mean; its id comes "
                    "back.")


class ForgetRequest(_Request):
    """``POST /forget``: expired records always go; the criteria (AND) add more."""

    kinds: list[Literal["patterns", "episodes", "skills"]] | None = Field(
        None, min_length=1, description="Default: patterns, episodes and skills.")
    older_than: float | None = Field(None, gt=0, le=MAX_TTL,
                                     description="Stored at least this many seconds ago.")
    reward_below: float | None = Field(None, ge=-1.0, le=1.0,
                                       description="Reward (skills: success rate) below this.")
    unused_for: float | None = Field(None, gt=0, le=MAX_TTL,
                                     description="Not updated for this many seconds.")
    where: JsonObject | None = _WHERE


class ForgetResponse(_Response):
    """``POST /forget``: the removed ids per kind."""

    removed: dict[str, list[int]]



_MODE = Field("vector", description='"vector" (HNSW), "text" (full-text, BM25) or "hybrid" '
                                     "(both fused by reciprocal rank); text and hybrid need "
                                     "a text query.")
_TEXT_WEIGHT = Field(0.5, ge=0.0, le=1.0,
                     description="The text side's weight in hybrid fusion (vector: 1 - it).")


def _candidates_ok(req: Any) -> Any:
    """``candidates`` (when given) is at least ``k``."""
    if req.candidates is not None and req.candidates < req.k:
        raise ValueError(f"candidates ({req.candidates}) must be >= k ({req.k})")
    return req


def _text_mode_ok(req: Any, text_field: str) -> Any:
    """``mode`` text / hybrid: a text query, and not with ``diversity``."""
    if req.mode != "vector":
        if getattr(req, text_field) is None:
            raise ValueError(f"mode {req.mode!r} needs a text query ({text_field}), not a "
                             "vector")
        if req.diversity is not None:
            raise ValueError(f"diversity applies to vector searches, not mode {req.mode!r}")
    return req


def _diverse_candidates(req: Any, text_field: str = "task") -> Any:
    """``candidates`` only with ``diversity`` or a text / hybrid ``mode``, and at least
    ``k``."""
    if req.candidates is not None and req.diversity is None and req.mode == "vector":
        raise ValueError("candidates only applies with diversity or mode text / hybrid")
    return _candidates_ok(_text_mode_ok(req, text_field))


class PatternSearchRequest(_TaskQuery):
    """``POST /patterns/search``: exactly one of ``task`` (text) or ``vector``."""

    k: int = _k(5)
    min_reward: float | None = _MIN_REWARD
    success_only: bool = False
    session_id: str | None = None
    where: JsonObject | None = _WHERE
    threshold: float | None = _THRESHOLD
    ef: int | None = _EF
    adapt: bool = _ADAPT
    rerank: Literal["attention", "attention+reward"] | None = Field(
        None, description='Re-rank a wider candidate set by attention ("attention"), times '
                          'the reward prior ("attention+reward"); hits then carry a score.')
    candidates: int | None = Field(
        None, ge=1, le=MAX_CANDIDATES,
        description="Candidates to re-rank or to pick diverse hits from (>= k; default "
                    "max(4k, 20)). Only with rerank or diversity.")
    heads: int | None = Field(
        None, ge=1, le=MAX_DIM,
        description="Attention heads, dividing the dimension (default 1). Only with rerank.")
    temperature: float | None = _temperature(None)
    diversity: float | None = _DIVERSITY
    mode: Literal["vector", "text", "hybrid"] = _MODE
    text_weight: float = _TEXT_WEIGHT

    @model_validator(mode="after")
    def _rerank_options(self) -> PatternSearchRequest:
        if self.rerank is not None and self.diversity is not None:
            raise ValueError("diversity and rerank do not combine; pass one")
        if self.rerank is not None and self.mode != "vector":
            raise ValueError(f"rerank applies to vector searches, not mode {self.mode!r}")
        _text_mode_ok(self, "task")
        if self.rerank is None:
            given = [f for f in ("heads", "temperature") if getattr(self, f) is not None]
            if self.diversity is None and self.mode == "vector" and self.candidates is not None:
                given.insert(0, "candidates")
            if given:
                raise ValueError(f"{', '.join(given)} only apply to a re-ranked search: "
                                 "add rerank ('attention' or 'attention+reward')")
        return _candidates_ok(self)


class PatternContextRequest(_TaskQuery):
    """``POST /patterns/context``: an attention-weighted summary of the ``k`` most relevant
    patterns (exactly one of ``task`` or ``vector``)."""

    k: int = _k(10)
    temperature: float = _temperature(0.05)
    adapt: bool = _ADAPT
    min_reward: float | None = _MIN_REWARD
    success_only: bool = False
    session_id: str | None = None
    where: JsonObject | None = _WHERE


class FeedbackRequest(_TaskQuery):
    """``POST /feedback``: ``patternId`` was the right (reward > 0) or a wrong (reward < 0)
    memory for the query (exactly one of ``task`` or ``vector``)."""

    pattern_id: _PatternId
    reward: float = Field(1.0, ge=-1.0, le=1.0,
                          description="Weight and sign of the feedback, -1..1 (0: no update).")


class TrajectoryFeedbackRequest(_TaskQuery):
    """``POST /feedback/trajectory``: the outcome of one retrieval step of a trajectory."""

    retrieved_ids: list[_PatternId] = Field(
        ..., max_length=MAX_K, description="The ids the search returned, best first.")
    outcome_reward: float = Field(..., ge=-1.0, le=1.0, description="The outcome, -1..1.")
    used: int | None = Field(None, ge=1, le=MAX_ID,
                             description="The pattern acted on (default: the first retrieved).")

    @model_validator(mode="after")
    def _positive_given(self) -> TrajectoryFeedbackRequest:
        if not self.retrieved_ids and self.used is None:
            raise ValueError("retrievedIds is empty and no 'used' pattern was given")
        return self


class EpisodeStoreRequest(_TaskRecordRequest):
    """``POST /episodes/store``: pattern fields plus the episode's outcome."""

    latency_ms: float | None = Field(None, ge=0.0)
    tokens: int | None = Field(None, ge=0, le=MAX_ID)
    skills: list[str] | None = Field(None, max_length=1000,
                                     description="Names of existing skills used.")


class _SearchOptions(_Request):
    """The search options episodes and skills share: diversity and text / hybrid mode."""

    diversity: float | None = _DIVERSITY
    mode: Literal["vector", "text", "hybrid"] = _MODE
    text_weight: float = _TEXT_WEIGHT
    candidates: int | None = _DIVERSE_CANDIDATES


class EpisodeSearchRequest(_TaskQuery, _SearchOptions):
    """``POST /episodes/search``: like patterns; ``success`` true/false/null filters."""

    k: int = _k(10)
    min_reward: float | None = _MIN_REWARD
    success: bool | None = Field(None, description="true: successes, false: failures only.")
    session_id: str | None = None
    where: JsonObject | None = _WHERE
    threshold: float | None = _THRESHOLD
    ef: int | None = _EF

    @model_validator(mode="after")
    def _diverse(self) -> EpisodeSearchRequest:
        return _diverse_candidates(self)


class SkillStoreRequest(_Request):
    """``POST /skills/store``: names are unique (``409`` when taken)."""

    name: str = Field(..., min_length=1)
    description: str = ""
    signature: str | None = None
    code: str | None = None
    metadata: JsonObject | None = None
    embedding: _Vector | None = _vector('Explicit embedding (else "name: description").')
    ttl: float | None = _TTL
    expires_at: float | None = _EXPIRES_AT

    @model_validator(mode="after")
    def _expiry(self) -> SkillStoreRequest:
        return _one_expiry(self)


class SkillSearchRequest(_SearchOptions):
    """``POST /skills/search``: exactly one of ``query`` (text) or ``vector``."""

    query: str | None = Field(None, min_length=1)
    vector: _Vector | None = _vector("Query vector (instead of query).")
    k: int = _k(10)
    min_success_rate: float | None = Field(None, ge=0.0, le=1.0)
    where: JsonObject | None = _WHERE
    threshold: float | None = _THRESHOLD
    ef: int | None = _EF

    @model_validator(mode="after")
    def _one_of(self) -> SkillSearchRequest:
        return _diverse_candidates(_one_query(self, "query"), "query")


class CypherRequest(_Request):
    """``POST /graph/cypher``: a query with ``$name`` parameters."""

    query: str = Field(..., min_length=1)
    params: JsonObject | None = None
    timeout: float | None = Field(
        None, gt=0, le=86400,
        description="Seconds the query may run (at most the server's --cypher-timeout, "
                    "which also applies when this is absent); past it: 408 query_timeout.")
    max_rows: int | None = Field(
        None, ge=1, le=10**9,
        description="Rows the query may return (at most the server's --cypher-max-rows); "
                    "more: 400 query_limit.")


# ---- responses ------------------------------------------------------------------------------
class ErrorBody(_Response):
    """The stable error ``code`` and a human-readable ``message``."""

    code: str
    message: str


class ErrorResponse(_Response):
    """Every error answer: ``{"error": {"code", "message"}}``."""

    error: ErrorBody


class BackupRequest(_Request):
    """``POST /backup``: a file name in the server's backup directory."""

    name: str = Field(..., min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
                      description="File name of the backup (letters, digits, . _ -; no "
                                  "path): created in the server's --backup-dir.")


class BackupResponse(_Response):
    """``POST /backup``: what the copy holds."""

    name: str
    generation: int
    records: dict[str, int]
    rebuilt_on_open: list[str]


class HealthResponse(_Response):
    """``GET /health``."""

    status: str


class ReadyResponse(_Response):
    """``GET /ready``."""

    status: str
    patterns: int


class _TaskRecordOut(_Response):
    """The fields patterns and episodes share (``embedding`` only with
    ``includeEmbedding=true``)."""

    id: int
    task: str
    reward: float
    success: bool
    session_id: str | None
    input: str | None
    output: str | None
    critique: str | None
    metadata: dict[str, Any]
    created_at: float
    updated_at: float
    expires_at: float | None = None
    embedding: list[float] | None = None


class PatternOut(_TaskRecordOut):
    """A pattern (``uses``: stores folded into it by de-duplication, 1 at first)."""

    uses: int = 1


class EpisodeOut(_TaskRecordOut):
    """An episode: the task, its outcome and its self-critique."""

    latency_ms: float | None
    tokens: int | None
    skills: list[str]


class SkillOut(_Response):
    """A skill (``embedding`` only with ``includeEmbedding=true``)."""

    id: int
    name: str
    description: str
    signature: str | None
    code: str | None
    success_rate: float
    uses: int
    metadata: dict[str, Any]
    created_at: float
    updated_at: float
    expires_at: float | None = None
    embedding: list[float] | None = None


class _Hit(_Response):
    id: int
    similarity: float
    distance: float


class VectorHit(_Hit):
    """A ``/vectors/search`` hit."""

    metadata: dict[str, Any]


class PatternHit(_Hit):
    """A pattern search hit (``score``: the attention weight, only when re-ranked)."""

    pattern: PatternOut
    score: float | None = None


class EpisodeHit(_Hit):
    """An episode search hit."""

    episode: EpisodeOut


class SkillHit(_Hit):
    """A skill search hit."""

    skill: SkillOut


class VectorSearchResponse(_Response):
    """``POST /vectors/search``."""

    results: list[VectorHit]


class PatternMatch(PatternOut):
    """A pattern with its similarity to the query (the seed system's ``patterns`` list)."""

    similarity: float


class PatternSearchResponse(_Response):
    """``POST /patterns/search``: ``results`` (hits with the pattern nested) and, for the seed
    system's clients, ``patterns`` (the same patterns, flat, each with its similarity)."""

    results: list[PatternHit]
    patterns: list[PatternMatch]


class ContextWeight(_Response):
    """How much one pattern contributed to a synthesized context."""

    id: int
    weight: float


class PatternContextResponse(_Response):
    """``POST /patterns/context``: ``vector = sum_i weight_i x_i`` over the stored embeddings
    of ``results``; the weights sum to 1 (an empty store: a zero vector, no weights)."""

    vector: list[float]
    weights: list[ContextWeight]
    results: list[PatternHit]


class FeedbackResponse(_Response):
    """``POST /feedback`` and ``/feedback/trajectory``: ``updated`` with the loss, the
    positive's softmax probability and rank before the step and the update count, or
    ``updated: false`` and the ``reason`` (learning disabled, reward 0)."""

    updated: bool
    loss: float | None = None
    p_positive: float | None = None
    rank_before: int | None = None
    updates: int | None = None
    reason: str | None = None


class EpisodeSearchResponse(_Response):
    """``POST /episodes/search``."""

    results: list[EpisodeHit]


class SkillSearchResponse(_Response):
    """``POST /skills/search``."""

    results: list[SkillHit]


class UpsertResponse(_Response):
    """``POST /vectors``: the ids, in request order."""

    ids: list[int]


class PatternStored(_Response):
    """``POST /patterns/store`` (``success``: always true, the seed system's answer)."""

    success: bool = True
    id: int
    pattern: PatternOut


class PatternsDeleted(_Response):
    """``DELETE /patterns``: how many patterns the filter deleted."""

    deleted: int


class EpisodeStored(_Response):
    """``POST /episodes/store`` (``success``: always true, the seed system's answer)."""

    success: bool = True
    id: int
    episode: EpisodeOut


class SkillStored(_Response):
    """``POST /skills/store`` (``success``: always true, the seed system's answer)."""

    success: bool = True
    id: int
    skill: SkillOut


class CypherResponse(_Response):
    """``POST /graph/cypher``: rows are objects keyed by column."""

    columns: list[str]
    rows: list[dict[str, Any]]
