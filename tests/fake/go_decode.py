"""A request body read as Ollama's handlers read it: gin's ``ShouldBindJSON``, which is ``json.NewDecoder(body).Decode``.

Go's Decoder takes the first JSON value of the body and leaves the rest unread (encoding/json/stream.go
``Decoder.readValue``), so bytes after it are no error. Its syntax errors are its scanner's, text for text
(encoding/json/scanner.go: ``invalid character 'x' <where>`` from each state, ``quoteChar``, ``maxNestingDepth``); a
body that ends inside the value is ``unexpected EOF`` and one with no value at all is ``io.EOF``, which the handlers
answer with words of their own. Held to the machine's Go by tests/fake/test_go_decode.py.
"""

from __future__ import annotations

import json
import sys
import unicodedata

MAX_DEPTH = 10_000  # scanner.go maxNestingDepth
_SPACE = b" \t\r\n"
_HEX = b"0123456789abcdefABCDEF"
_DIGITS = b"0123456789"
_QUOTE_ESCAPES = {7: r"\a", 8: r"\b", 12: r"\f", 10: r"\n", 13: r"\r", 9: r"\t", 11: r"\v", 92: "\\\\"}


class NoValue(EOFError):
    """io.EOF: the body held nothing but spaces."""


class GoSyntaxError(ValueError):
    """A *json.SyntaxError (or io.ErrUnexpectedEOF); ``str()`` is its Error()."""


def quote_char(c: int) -> str:
    """scanner.go quoteChar: the byte as a rune, quoted as strconv.Quote writes it, in single quotes."""
    if c == ord("'"):
        return "'\\''"
    if c == ord('"'):
        return "'\"'"
    if c in _QUOTE_ESCAPES:
        return f"'{_QUOTE_ESCAPES[c]}'"
    char = chr(c)
    if c < 0x20 or c == 0x7F:
        return f"'\\x{c:02x}'"
    if c >= 0x80 and not _printable(char):
        return f"'\\u{c:04x}'"
    return f"'{char}'"


def _printable(char: str) -> bool:
    """strconv.IsPrint for U+0080..U+00FF: letters, marks, numbers, punctuation, symbols and U+0020 only."""
    return unicodedata.category(char)[0] in "LMNPS"


def _error(c: int, context: str) -> GoSyntaxError:
    return GoSyntaxError(f"invalid character {quote_char(c)} {context}")


def first_value_end(raw: bytes) -> int:
    """Where the body's first JSON value ends, as Decoder.readValue scans it; raises what it would return."""
    stack: list[str] = []  # "key" or "value" for an object, "array"
    state = "begin_value"
    literal, word = b"", ""  # the rest of true, false or null still expected, and which
    for index, c in enumerate(raw):
        if state == "literal":
            if c != literal[0]:
                raise _error(c, f"in literal {word} (expecting {quote_char(literal[0])})")
            literal = literal[1:]
            if literal:
                continue
            state = "end_value"
            if not stack:
                return index + 1
            continue
        if state in ("string", "escape") or state.startswith("hex"):
            state = _string_step(state, c)
            if state == "end_value" and not stack:
                return index + 1
            continue
        if state in ("neg", "int", "zero", "dot", "fraction", "exp", "exp_sign", "exponent"):
            state = _number_step(state, c)
            if state != "end_value":
                continue
            if not stack:  # a top-level number ends at the byte after it, which the Decoder leaves unread
                return index
        if state in ("begin_value", "begin_value_or_empty", "begin_key_or_empty", "begin_key"):
            if c in _SPACE:
                continue
            if state == "begin_value_or_empty" and c == ord("]"):
                state = "end_value"
            elif state == "begin_key_or_empty" and c == ord("}"):
                stack[-1] = "value"
                state = "end_value"
            elif state in ("begin_key_or_empty", "begin_key"):
                if c != ord('"'):
                    raise _error(c, "looking for beginning of object key string")
                state = "string"
                continue
            else:
                state, literal = _begin_value(c, stack)
                word = chr(c) + literal.decode()
                continue
        # end_value
        if c in _SPACE:
            continue
        top = stack[-1]
        if top == "key":
            if c != ord(":"):
                raise _error(c, "after object key")
            stack[-1], state = "value", "begin_value"
        elif c == ord(","):
            if top == "value":
                stack[-1], state = "key", "begin_key"
            else:
                state = "begin_value"
        elif c == ord("}" if top == "value" else "]"):
            stack.pop()
            if not stack:
                return index + 1
        else:
            raise _error(c, "after object key:value pair" if top == "value" else "after array element")
    if state in ("int", "zero", "fraction", "exponent") and not stack:
        return len(raw)  # a top-level number that the body ends: complete
    if raw.strip(_SPACE):
        raise GoSyntaxError("unexpected EOF")
    raise NoValue()


def _begin_value(c: int, stack: list[str]) -> tuple[str, bytes]:
    if c == ord("{") or c == ord("["):
        stack.append("key" if c == ord("{") else "array")
        if len(stack) > MAX_DEPTH:
            raise _error(c, "exceeded max depth")
        return ("begin_key_or_empty" if c == ord("{") else "begin_value_or_empty"), b""
    if c == ord('"'):
        return "string", b""
    if c == ord("-"):
        return "neg", b""
    if c == ord("0"):
        return "zero", b""
    if c in b"123456789":
        return "int", b""
    if c in b"tfn":
        return "literal", {ord("t"): b"rue", ord("f"): b"alse", ord("n"): b"ull"}[c]
    raise _error(c, "looking for beginning of value")


def _string_step(state: str, c: int) -> str:
    if state == "string":
        if c == ord('"'):
            return "end_value"
        if c == ord("\\"):
            return "escape"
        if c < 0x20:
            raise _error(c, "in string literal")
        return "string"
    if state == "escape":
        if c in b'bfnrt\\/"':
            return "string"
        if c == ord("u"):
            return "hex0"
        raise _error(c, "in string escape code")
    if c not in _HEX:
        raise _error(c, "in \\u hexadecimal character escape")
    return "string" if state == "hex3" else f"hex{int(state[3]) + 1}"


def _number_step(state: str, c: int) -> str:
    """One byte of a number; "end_value" where the byte is not the number's (the caller reads it again)."""
    digit = c in _DIGITS
    if state == "neg":
        if c == ord("0"):
            return "zero"
        if digit:
            return "int"
        raise _error(c, "in numeric literal")
    if state == "int" and digit:
        return "int"
    if state in ("int", "zero"):
        if c == ord("."):
            return "dot"
        return "exp" if c in b"eE" else "end_value"
    if state == "dot":
        if digit:
            return "fraction"
        raise _error(c, "after decimal point in numeric literal")
    if state == "fraction":
        if digit:
            return "fraction"
        return "exp" if c in b"eE" else "end_value"
    if state == "exp" and c in b"+-":
        return "exp_sign"
    if state in ("exp", "exp_sign"):
        if digit:
            return "exponent"
        raise _error(c, "in exponent of numeric literal")
    return "exponent" if digit else "end_value"


def decode(raw: bytes) -> object:
    """The body's first JSON value, as Go's Decoder reads it; invalid UTF-8 in a string becomes U+FFFD, as in Go."""
    end = first_value_end(raw)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 2 * MAX_DEPTH + 1000))  # Go reads 10,000 levels; Python's decoder recurses per level
    try:
        return json.loads(raw[:end].decode("utf-8", errors="replace"))
    finally:
        sys.setrecursionlimit(limit)


def kind(value: object) -> str:
    """How encoding/json's UnmarshalTypeError names a JSON value it could not store (decode.go)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}[type(value)]
