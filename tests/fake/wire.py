"""The JSON fields of Ollama's native answers, in the order Go's encoding/json writes them (struct order,
embedded structs inlined where they stand), read from api/types.go at v0.32.15 (the release the fake
names; the file is unchanged at v0.33.0-rc2, fb30760, which shared/ollama-facts.md was read from).

Each field: (JSON name, omitted when empty). ``omitempty`` has no effect on a struct-typed field
(``Details ModelDetails `json:"details,omitempty"```): Go writes it always, so it is marked required.
These are facts about the format, written out by hand; tests/fake/test_wire.py holds the fake to them.
"""

from __future__ import annotations

Fields = tuple[tuple[str, bool], ...]

# api/types.go Metrics, embedded in GenerateResponse and ChatResponse
METRICS: Fields = (
    ("total_duration", True), ("load_duration", True), ("prompt_eval_count", True),
    ("prompt_eval_duration", True), ("eval_count", True), ("eval_duration", True),
)
# api/types.go GenerateResponse
GENERATE_RESPONSE: Fields = (
    ("model", False), ("remote_model", True), ("remote_host", True), ("created_at", False), ("response", False),
    ("thinking", True), ("done", False), ("done_reason", True), ("context", True), *METRICS,
    ("tool_calls", True), ("_debug_info", True), ("logprobs", True),
)
# api/types.go ChatResponse
CHAT_RESPONSE: Fields = (
    ("model", False), ("remote_model", True), ("remote_host", True), ("created_at", False), ("message", False),
    ("done", False), ("done_reason", True), ("_debug_info", True), ("logprobs", True), *METRICS,
)
# api/types.go Message
MESSAGE: Fields = (
    ("role", False), ("content", False), ("thinking", True), ("images", True), ("tool_calls", True),
    ("tool_name", True), ("tool_call_id", True),
)
# api/types.go ModelDetails
MODEL_DETAILS: Fields = (
    ("parent_model", False), ("format", False), ("family", False), ("families", False), ("parameter_size", False),
    ("quantization_level", False), ("context_length", True), ("embedding_length", True),
)
# api/types.go ProcessModelResponse (each of /api/ps's ProcessResponse.models)
PROCESS_MODEL_RESPONSE: Fields = (
    ("name", False), ("model", False), ("size", False), ("digest", False), ("details", False),
    ("expires_at", False), ("size_vram", False), ("context_length", False),
)
# api/types.go ListModelResponse (each of /api/tags's ListResponse.models)
LIST_MODEL_RESPONSE: Fields = (
    ("name", False), ("model", False), ("remote_model", True), ("remote_host", True), ("modified_at", False),
    ("size", False), ("digest", False), ("details", False), ("capabilities", True),
)
# api/types.go EmbedResponse (/api/embed) and EmbeddingResponse (/api/embeddings)
EMBED_RESPONSE: Fields = (
    ("model", False), ("embeddings", False), ("total_duration", True), ("load_duration", True), ("prompt_eval_count", True),
)
EMBEDDING_RESPONSE: Fields = (("embedding", False),)
# server/routes.go GenerateRoutes: gin.H{"version": version.Version}
VERSION_RESPONSE: Fields = (("version", False),)
