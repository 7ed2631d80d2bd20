"""tests/fake/go_decode.py held to Go's own encoding/json Decoder (the machine's Go, stdlib only), the reader Ollama's
handlers use through gin's ShouldBindJSON: over hand-picked bodies and a few thousand broken ones, both must end the
first value at the same byte or fail with the same words."""

from __future__ import annotations

import json
import random

import pytest

from tests.fake.go_decode import GoSyntaxError, NoValue, decode, first_value_end, quote_char
from tests.support.harness import go_run

PROGRAM = """package main

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
)

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<24)
	for in.Scan() {
		body, _ := hex.DecodeString(in.Text())
		decoder := json.NewDecoder(bytes.NewReader(body))
		var value any
		if err := decoder.Decode(&value); err != nil {
			fmt.Printf("error %q\\n", err.Error())
		} else {
			fmt.Printf("end %d\\n", decoder.InputOffset())
		}
	}
}
"""

VALID = [
    b'{"model":"llama3.2:1b","prompt":"why is the sky blue?","stream":false,"options":{"num_ctx":8192,"temperature":0.7}}',
    b'{"model":"qwen3:8b","messages":[{"role":"user","content":"hi \\u00e9\\n"},{"role":"assistant","content":"","tool_calls":[]}],"think":true}',
    b'[1, -0.5e+3, 2E-2, true, false, null, "a\\"b\\\\c\\/"]',
    b'  {"a" : { "b" : [ ] , "c" : { } } }  ',
    b"123", b"-0", b'"text"', b"true", b"null",
]
BROKEN = [
    b"", b"   \n\t", b"{not json", b'{"a":1,}', b'{"model":', b'{"a" 1}', b"[1 2]", b'{"a":tru}', b'{"a":"\x01"}', b'{"a":"\\x"}',
    b'{"a":"\\u12G4"}', b'{"a":1.}', b'{"a":1e}', b'{"a":1e+}', b'{"a":-}', b'{"a":01}', b"{} trailing", b"123abc", b"\xff", b'{"a":"\xff"}',
    b"'single'", b'{"a":NaN}', b'{"a":Infinity}', b"[", b"{", b'{"a"', b'"open', b"nul", b"fals", b"-", b"1.", b"1e",
    b"\x00", b"\x7f", b"\xa0", b"\xad", b"\xe9", b'{"a":1}}', b"[1,]", b"{,}", b"{:}", b'{"a"::1}', b"[1]]", b"\xef\xbb\xbf{}",
    b"[" * 10_000 + b"]" * 10_000, b"[" * 10_001 + b"]" * 10_001, b'{"a":' * 10_001,
]


def broken_at_random(count: int, seed: int = 11) -> list[bytes]:
    """Valid bodies with one byte deleted, replaced or inserted, or cut short."""
    rng = random.Random(seed)
    interesting = b' \t\n{}[]:,"\\/-+.0123456789eEtfnrulasxuX\x00\x1f\x7f\x80\xc3\xff\''
    out = []
    for _ in range(count):
        body = bytearray(rng.choice(VALID))
        at = rng.randrange(len(body) + 1)
        kind = rng.randrange(4)
        if kind == 0 and at < len(body):
            del body[at]
        elif kind == 1 and at < len(body):
            body[at] = rng.choice(interesting)
        elif kind == 2:
            body.insert(at, rng.choice(interesting))
        else:
            del body[at:]
        out.append(bytes(body))
    return out


def ours(body: bytes) -> str:
    try:
        return f"end {first_value_end(body)}"
    except NoValue:
        return 'error "EOF"'
    except GoSyntaxError as error:
        return f"error {json.dumps(str(error), ensure_ascii=False)}"


def as_go_quotes(line: str) -> str:
    """Go's %q of the error, read back and written as json.dumps writes it, to compare the texts themselves."""
    if not line.startswith("error "):
        return line
    text = line[len("error "):]
    return "error " + json.dumps(_unquote_go(text), ensure_ascii=False)


def _unquote_go(quoted: str) -> str:
    """strconv.Quote's output read back (its escapes are Python's, but for \\x.. and \\u.... on their own)."""
    return quoted[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape")


def test_bodies_are_read_as_gos_decoder_reads_them():
    bodies = VALID + BROKEN + broken_at_random(3000)
    answers = go_run(PROGRAM, [body.hex() for body in bodies])
    assert len(answers) == len(bodies)
    differ = [(body[:80], answer, ours(body)) for body, answer in zip(bodies, answers) if as_go_quotes(answer) != ours(body)]
    assert not differ, differ[:10]
    assert sum(answer.startswith("error") for answer in answers) > 1500  # most of the broken ones are broken


def test_the_bytes_are_quoted_as_go_quotes_them():
    """quoteChar over every byte, against strconv.Quote's escapes as Go writes them in the error."""
    bodies = [bytes([c]) for c in range(256) if c not in b' \t\r\n{["-0123456789tfn']
    answers = go_run(PROGRAM, [body.hex() for body in bodies])
    for body, answer in zip(bodies, answers):
        assert answer == f'error "invalid character {_go_q(quote_char(body[0]))} looking for beginning of value"', (body, answer)


def _go_q(text: str) -> str:
    """The text as Go's %q writes it inside the line (backslashes and quotes escaped again)."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


@pytest.mark.parametrize(("body", "value"), [(b'{"a":"\xff"} rest', {"a": "\ufffd"}), (b"123abc", 123), (b'  [1, "x"]\n\n{', [1, "x"]),
                                            (b'{"a":' * 9_999 + b"1" + b"}" * 9_999, "deep")])
def test_the_first_value_is_read_and_the_rest_left(body, value):
    decoded = decode(body)
    if value == "deep":  # 9,999 levels, as Go reads them
        for _ in range(9_998):
            decoded = decoded["a"]
        assert decoded == {"a": 1}
    else:
        assert decoded == value
