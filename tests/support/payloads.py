"""Request bodies as clients send them: the tools an agent offers, in each API's shape."""

from __future__ import annotations


TOOLS_OPENAI = [{"type": "function", "name": "get_weather", "description": "weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]



TOOL_FUNCTION = {"type": "function", "function": {"name": "get_weather", "description": "weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}



TOOLS_ANTHROPIC = [{"name": "get_weather", "description": "weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
