"""The dashboard's Sessions view: each agent session among the recent requests (ui/sessions.py), its turns and
tokens, and its time in Ollama against the time between its turns."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from ui import format as fmt
from ui.sessions import Session, sessions


def rows(found: list[Session]) -> pd.DataFrame:
    return pd.DataFrame([
        {
            "session": session.session[:8],
            "client": session.client,
            "model": ", ".join(session.models),
            "turns": session.turns,
            "tokens in / out": f"{fmt.count(session.input_tokens)} / {fmt.count(session.output_tokens)}",
            "cache hits": fmt.percent(session.cached_tokens / session.input_tokens if session.cached_tokens is not None and session.input_tokens else None),
            "cache lost": f"{session.turns_read_again} turns, {session.read_again_tokens:,} tokens read again" if session.turns_read_again else "",
            "in Ollama": fmt.seconds(session.in_ollama_s),
            "waiting": fmt.seconds(session.waiting_s),
            "to first output": fmt.seconds(session.to_first_output_s),
            "generating": fmt.seconds(session.after_first_output_s),
            "between turns": fmt.seconds(session.between_turns_s),
            "last turn": fmt.age(time.time() - session.ended),
        }
        for session in found
    ])


def show(entries: list[dict], unreachable: list[str]) -> None:
    st.header("Agent sessions")
    for url in unreachable:
        st.warning(f"The proxy's request list at {url}/-/requests cannot be read.")
    found = sessions(entries)
    if not found:
        st.caption("No agent session among the recent requests. Claude Code, Codex, opencode and goose name their sessions "
                   "in a header (docs/metrics.md); other clients' requests are listed under Live.")
        return
    st.table(rows(found).set_index("session"))  # a few rows: a plain table, every figure readable as text
    st.caption("From each proxy's recent requests (--recent-requests). In Ollama: each turn from its arrival to its last byte, "
               "as waiting (loads, a reload's drain, a free slot), up to the first output (the prompt; for a turn that opens with "
               "a tool call, its whole generation too) and generating. Between turns: the agent's tools running on your machine, "
               "or you. Sessions are named by a hash of the agent's session id; no text is kept.")
