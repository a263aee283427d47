"""Every message docs/rotation-runbook.md quotes is one the code prints.

An operator searches the logs for the text the runbook shows; a quote the code does not print sends
them looking for nothing. Quotes are found in three places:

* the failure tables (a header cell "... looks like"): each `backticked` span of the first column;
* log excerpts (fenced blocks without a language whose lines read `message  key=value ...`): the
  message of each line;
* inline `backticked` spans of prose that read like a sentence (three words or more, starting with a
  lower-case letter or a placeholder) and not like a command.

In a quote, `…`, `...` and `<placeholder>` stand for text the runbook does not spell out, and
`key=value` tokens are log fields. Each part between them must be made of the pieces of the code's
string literals (crates/*/src; a `{...}` format argument splits a literal into pieces): whole pieces
joined, except that a part may begin inside a piece and end inside one (a quote is a substring of a
message), or of the words of Postgres and AWS that the code passes through (FOREIGN below).
"""

import re
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK = ROOT / "docs" / "rotation-runbook.md"

# Text our messages carry through from elsewhere: the server's words, AWS error codes and the SDK's.
FOREIGN = [
    "FATAL 28P01: password authentication failed",
    "password authentication failed",
    "permission denied to grant role",
    "cannot insert multiple commands into a prepared statement",
    "AccessDeniedException",
    "AccessDenied",
    "ResourceNotFoundException",
    "connection refused",
    "Connection refused",
]

ELISION = re.compile(r"…|\.\.\.|<[^<>]{1,40}>")
FIELD = re.compile(r"(?<![\w.])[a-z_]+=\S*")
COMMAND = re.compile(
    r"^(aws|curl|make|cargo|psql|sam|git|export|SELECT|ALTER|GRANT|CREATE|REVOKE|\\|fields|filter|stats|sort|DB_|[A-Z_]+=)"
)


def rust_string_literals(text):
    """The contents of the Rust string literals in `text`, escapes resolved, line continuations joined."""
    out = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if c == "'" and i + 2 < n and (text[i + 1] != "\\" and text[i + 2] == "'"):
            i += 3  # a char literal such as '"'
            continue
        if c == "'" and text.startswith("'\\", i):
            j = text.find("'", i + 2)
            i = n if j < 0 else j + 1
            continue
        m = re.match(r'r(#*)"', text[i:]) if c == "r" and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")) else None
        if m:
            end = '"' + m.group(1)
            j = text.find(end, i + len(m.group(0)))
            out.append(text[i + len(m.group(0)) : j])
            i = j + len(end)
            continue
        if c == '"':
            buf = []
            i += 1
            while i < n and text[i] != '"':
                if text[i] == "\\":
                    nxt = text[i + 1]
                    if nxt == "\n":
                        i += 2
                        while i < n and text[i] in " \t":
                            i += 1
                        continue
                    buf.append({"n": "\n", "t": "\t", '"': '"', "\\": "\\", "'": "'", "0": "\0"}.get(nxt, nxt))
                    i += 2
                    continue
                buf.append(text[i])
                i += 1
            out.append("".join(buf))
            i += 1
            continue
        i += 1
    return out


def code_pieces(root=ROOT):
    pieces = set()
    files = sorted((root / "crates").glob("*/src/**/*.rs"))
    if not files:
        raise AssertionError("no Rust sources under crates/*/src")
    for f in files:
        for literal in rust_string_literals(f.read_text()):
            literal = literal.replace("{{", "\x01").replace("}}", "\x02")
            for piece in re.split(r"\{[^{}]*\}", literal):
                piece = piece.replace("\x01", "{").replace("\x02", "}")
                # A bare piece of a few letters ("t", "ssl") would let any word of a quote through;
                # a short word between arguments (" on ") is a real joint.
                short = len(piece.strip()) < 4 and re.search(r"[A-Za-z]", piece)
                if piece.strip() and (not short or re.fullmatch(r"\W+\w+\W+", piece)):
                    pieces.add(piece)
    pieces.update(FOREIGN)
    return pieces


def quotes(runbook=RUNBOOK):
    """(line number, quoted text) for every quote of a message in the runbook."""
    found = []
    lines = runbook.read_text().splitlines()
    in_table = False
    fence = None
    block = []
    for no, line in enumerate(lines, 1):
        if line.startswith("```"):
            if fence is None:
                fence = line[3:].strip()
                block = []
            else:
                if fence == "" and block and all(re.match(r"^[a-z][^=]*?  \w+=", l) for l, _ in block if l.strip()):
                    for l, n in block:
                        if l.strip():
                            found.append((n, l.split("  ")[0].strip()))
                fence = None
            continue
        if fence is not None:
            block.append((line, no))
            continue
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if "looks like" in cells[0]:
                in_table = True
                continue
            if in_table and not set(cells[0]) <= set("-: "):
                found.extend((no, q) for q in re.findall(r"`([^`]+)`", cells[0]))
                continue
            continue
        in_table = False
        for q in re.findall(r"`([^`]+)`", line):
            words = re.findall(r"[A-Za-z]+", ELISION.sub(" ", q))
            if len(words) >= 3 and " " in q and re.match(r"^([a-z]|<|…)", q) and not COMMAND.match(q):
                found.append((no, q))
    return found


def coverable(segment, pieces, at_start, at_end):
    """Whether `segment` is a run of code pieces: whole ones, except that the first may be a piece's
    end when an elision comes before it, and the last a piece's start when one follows it."""
    n = len(segment)
    reach = [False] * (n + 1)
    reach[0] = True
    for i in range(n):
        if not reach[i]:
            continue
        for j in range(i + 1, n + 1):
            if reach[j]:
                continue
            part = segment[i:j]
            first, last = i == 0, j == n
            if (
                part in pieces
                or (first and not at_start and any(p.endswith(part) for p in pieces))
                or (last and not at_end and any(p.startswith(part) for p in pieces))
                or (first and last and not at_start and not at_end and any(part in p for p in pieces))
            ):
                reach[j] = True
    return reach[n]


def unprinted(quote, pieces):
    """The parts of `quote` the code cannot print, or an empty list."""
    text = FIELD.sub("…", quote)
    parts = ELISION.split(text)
    bad = []
    for k, part in enumerate(parts):
        segment = part.strip()
        if len(re.findall(r"[A-Za-z]", segment)) < 3:
            continue
        # A quote is a substring of a message, and an elision may cut a piece anywhere: only the
        # joins inside a part must fall between pieces.
        candidate = part.strip()
        ok = coverable(candidate, pieces, at_start=False, at_end=False)
        if not ok:
            # Spacing around an elision is the runbook's, not the code's: try the trimmed pieces too.
            ok = coverable(candidate, pieces | {p.strip() for p in pieces}, at_start=False, at_end=False)
        if not ok:
            bad.append(segment)
    return bad


class RunbookQuotesCode(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pieces = code_pieces()
        cls.quotes = quotes()

    def test_the_runbook_quotes_messages(self):
        # Guards the extraction: a runbook that quotes nothing would pass the next test vacuously.
        self.assertGreater(len(self.quotes), 30, self.quotes)

    def test_every_quoted_message_is_printed_by_the_code(self):
        problems = []
        for no, quote in self.quotes:
            bad = unprinted(quote, self.pieces)
            if bad:
                problems.append(f"docs/rotation-runbook.md:{no}: `{quote}`: the code prints no {bad}")
        self.assertEqual(problems, [], "\n" + "\n".join(problems))


class ChecksCatchMistakes(unittest.TestCase):
    """The check fails on what it guards against."""

    @classmethod
    def setUpClass(cls):
        cls.pieces = code_pieces()

    def test_a_message_the_code_does_not_print_is_caught(self):
        self.assertTrue(unprinted("secret … could not be rotated because of a mystery", self.pieces))

    def test_a_paraphrase_of_a_real_message_is_caught(self):
        # The code says "no answer within N ms"; a runbook once said "timed out".
        self.assertTrue(unprinted("cannot connect to Postgres at … as <user> (credentials from secretsmanager): … timed out", self.pieces))

    def test_real_messages_with_elisions_pass(self):
        for quote in [
            "database refused the credentials; refreshing",
            "cannot connect to Postgres at … as <user> (credentials from secretsmanager): no answer within … ms",
            "secret … is not enabled for rotation",
            "step finished",
        ]:
            self.assertEqual(unprinted(quote, self.pieces), [], quote)

    def test_literals_are_read_with_escapes_and_continuations(self):
        text = 'x = "a \\"quoted\\" \\\n      word"; y = r#"raw "one""#; z = \'"\';'
        self.assertEqual(rust_string_literals(text), ['a "quoted" word', 'raw "one"'])

    def test_quotes_come_from_tables_log_blocks_and_prose(self):
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            page = Path(d) / "r.md"
            page.write_text(
                "| `<why>` looks like | step |\n|---|---|\n| `from the table` or `another one here` | x |\n\n"
                "```\nfrom a log block  step=x token=<v>\n```\n\n"
                "The API logs `from the prose line` and runs `aws logs tail it now`.\n"
            )
            got = [q for _, q in quotes(page)]
        self.assertEqual(got, ["from the table", "another one here", "from a log block", "from the prose line"])


if __name__ == "__main__":
    unittest.main()
