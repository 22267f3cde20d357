"""Tokenizer and parser for the virtual device's ``/system/bin/sh`` (a small POSIX-ish subset).

Grammar handled (what ``adb shell`` command lines use):

    script   := and_or ((';' | '&' | newline) and_or)*
    and_or   := pipeline (('&&' | '||') pipeline)*
    pipeline := command ('|' command)*
    command  := (NAME=value)* (word | redirection)+

Words keep their quoting as parts, because ``$VAR`` is expanded (and ``$?`` read) only when the
command runs, and only unquoted text is split into fields and globbed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ASSIGNMENT_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=")
SPECIAL_PARAMS = "?$#@*!-0123456789"


class ShellSyntaxError(Exception):
    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line = line
        self.message = message


@dataclass
class WordPart:
    kind: str  # "lit": literal text, "var": parameter ($NAME, ${NAME:-default}), "cmd": $(...)
    text: str
    quoted: bool = False
    default: "Word | None" = None  # ${NAME:-default}


@dataclass
class Word:
    parts: list[WordPart] = field(default_factory=list)

    def literal_prefix(self) -> str:
        """Leading unquoted literal text (used to recognise NAME=value and fd numbers)."""
        first = self.parts[0] if self.parts else None
        return first.text if first and first.kind == "lit" and not first.quoted else ""

    def is_plain(self) -> bool:
        return all(p.kind == "lit" and not p.quoted for p in self.parts)

    def plain_text(self) -> str:
        return "".join(p.text for p in self.parts)


@dataclass
class Redirection:
    fd: int
    op: str  # ">", ">>", "<", ">&", "<&"
    target: Word


@dataclass
class Assignment:
    name: str
    value: Word


@dataclass
class SimpleCommand:
    assignments: list[Assignment] = field(default_factory=list)
    words: list[Word] = field(default_factory=list)
    redirections: list[Redirection] = field(default_factory=list)


@dataclass
class Pipeline:
    commands: list[SimpleCommand]


@dataclass
class AndOr:
    first: Pipeline
    rest: list[tuple[str, Pipeline]] = field(default_factory=list)  # ("&&" | "||", pipeline)


@dataclass
class Token:
    kind: str  # "word", "op", "redir"
    line: int
    word: Word | None = None
    op: str = ""
    redirection: Redirection | None = None


OPERATOR_CHARS = ";&|"


class _Lexer:
    def __init__(self, text: str):
        self.text = text
        self.pos = 0
        self.line = 1
        self.tokens: list[Token] = []

    def error(self, message: str) -> ShellSyntaxError:
        return ShellSyntaxError(self.line, message)

    def peek(self, offset: int = 0) -> str:
        i = self.pos + offset
        return self.text[i] if i < len(self.text) else ""

    def tokenize(self) -> list[Token]:
        while self.pos < len(self.text):
            c = self.peek()
            if c in " \t":
                self.pos += 1
            elif c == "\\" and self.peek(1) == "\n":  # line continuation
                self.pos += 2
                self.line += 1
            elif c == "\n":
                self.tokens.append(Token("op", self.line, op="\n"))
                self.pos += 1
                self.line += 1
            elif c == "#":
                while self.pos < len(self.text) and self.peek() != "\n":
                    self.pos += 1
            elif c in OPERATOR_CHARS:
                two = self.text[self.pos:self.pos + 2]
                op = two if two in ("&&", "||", ";;") else c
                if op == ";;":
                    raise self.error("';;' unexpected")
                self.tokens.append(Token("op", self.line, op=op))
                self.pos += len(op)
            elif c in "<>":
                self.tokens.append(self.read_redirection(fd=None))
            elif c in "()":
                raise self.error(f"'{c}' unexpected")
            else:
                word = self.read_word()
                # "2>file": a word made only of digits directly followed by < or > is an fd.
                if self.peek() in ("<", ">") and word.is_plain() and word.plain_text().isdigit():
                    self.tokens.append(self.read_redirection(fd=int(word.plain_text())))
                else:
                    self.tokens.append(Token("word", self.line, word=word))
        return self.tokens

    def read_redirection(self, fd: int | None) -> Token:
        line = self.line
        c = self.peek()
        self.pos += 1
        if c == ">":
            op = ">"
            if self.peek() == ">":
                op, self.pos = ">>", self.pos + 1
            elif self.peek() == "&":
                op, self.pos = ">&", self.pos + 1
            elif self.peek() == "|":
                self.pos += 1
        else:
            op = "<"
            if self.peek() == "&":
                op, self.pos = "<&", self.pos + 1
            elif self.peek() in ("<", ">"):
                raise self.error(f"'{c}{self.peek()}' unsupported")
        while self.peek() in (" ", "\t"):
            self.pos += 1
        if self.peek() == "" or self.peek() in "\n;&|<>()":
            found = "newline" if self.peek() in ("", "\n") else self.peek()
            raise self.error(f"'{found}' unexpected")
        target = self.read_word()
        if fd is None:
            fd = 0 if op.startswith("<") else 1
        return Token("redir", line, redirection=Redirection(fd, op, target))

    def read_word(self) -> Word:
        word = Word()
        literal: list[str] = []

        def flush() -> None:
            if literal:
                word.parts.append(WordPart("lit", "".join(literal)))
                literal.clear()

        while self.pos < len(self.text):
            c = self.peek()
            if c in " \t\n" or c in OPERATOR_CHARS or c in "<>()":
                break
            if c == "'":
                flush()
                end = self.text.find("'", self.pos + 1)
                if end < 0:
                    raise self.error("unterminated quoted string")
                chunk = self.text[self.pos + 1:end]
                self.line += chunk.count("\n")
                word.parts.append(WordPart("lit", chunk, quoted=True))
                self.pos = end + 1
            elif c == '"':
                flush()
                self.read_double_quoted(word)
            elif c == "\\":
                flush()
                nxt = self.peek(1)
                if nxt == "":
                    self.pos += 1
                    word.parts.append(WordPart("lit", "\\", quoted=True))
                else:
                    word.parts.append(WordPart("lit", nxt, quoted=True))
                    self.pos += 2
            elif c == "$" or c == "`":
                part = self.read_dollar(quoted=False)
                if part is None:
                    literal.append("$")
                else:
                    flush()
                    word.parts.append(part)
            else:
                literal.append(c)
                self.pos += 1
        flush()
        if not word.parts:
            word.parts.append(WordPart("lit", "", quoted=True))
        return word

    def read_double_quoted(self, word: Word) -> None:
        self.pos += 1  # opening quote
        literal: list[str] = []

        def flush() -> None:
            word.parts.append(WordPart("lit", "".join(literal), quoted=True))
            literal.clear()

        while True:
            if self.pos >= len(self.text):
                raise self.error("unterminated quoted string")
            c = self.peek()
            if c == '"':
                self.pos += 1
                break
            if c == "\\" and self.peek(1) in ('"', "\\", "$", "`", "\n"):
                if self.peek(1) != "\n":
                    literal.append(self.peek(1))
                self.pos += 2
            elif c in ("$", "`"):
                part = self.read_dollar(quoted=True)
                if part is None:
                    literal.append("$")
                else:
                    flush()
                    word.parts.append(part)
            else:
                if c == "\n":
                    self.line += 1
                literal.append(c)
                self.pos += 1
        flush()

    def read_dollar(self, quoted: bool) -> WordPart | None:
        """Reads $NAME, ${NAME}, ${NAME:-default}, $?, $(...) or `...`; None for a lone '$'."""
        if self.peek() == "`":
            end = self.text.find("`", self.pos + 1)
            if end < 0:
                raise self.error("unterminated quoted string")
            body = self.text[self.pos + 1:end]
            self.pos = end + 1
            return WordPart("cmd", body, quoted)
        nxt = self.peek(1)
        if nxt == "(":
            return WordPart("cmd", self.read_parenthesised(), quoted)
        if nxt == "{":
            end = self.text.find("}", self.pos + 2)
            if end < 0:
                raise self.error("unterminated ${")
            body = self.text[self.pos + 2:end]
            self.pos = end + 1
            name, sep, default = body.partition(":-")
            if not (NAME_RE.fullmatch(name) or (len(name) == 1 and name in SPECIAL_PARAMS)):
                raise self.error(f"${{{body}}}: bad substitution")
            default_word = _Lexer(default).read_word() if sep else None
            return WordPart("var", name, quoted, default=default_word)
        if nxt and nxt in SPECIAL_PARAMS:
            self.pos += 2
            return WordPart("var", nxt, quoted)
        match = NAME_RE.match(self.text, self.pos + 1)
        if match:
            self.pos = match.end()
            return WordPart("var", match.group(), quoted)
        self.pos += 1
        return None

    def read_parenthesised(self) -> str:
        """Body of $( ... ), honouring nested parentheses and quotes."""
        start = self.pos + 2
        i, depth, quote = start, 1, ""
        while i < len(self.text):
            c = self.text[i]
            if quote:
                if c == quote:
                    quote = ""
                elif c == "\\" and quote == '"':
                    i += 1
            elif c in ("'", '"'):
                quote = c
            elif c == "\\":
                i += 1
            elif c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
                if depth == 0:
                    self.pos = i + 1
                    return self.text[start:i]
            i += 1
        raise self.error("unterminated $(")


class _Parser:
    def __init__(self, tokens: list[Token]):
        self.tokens = tokens
        self.i = 0

    def peek(self) -> Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def unexpected(self, token: Token | None) -> ShellSyntaxError:
        if token is None:
            last_line = self.tokens[-1].line if self.tokens else 1
            return ShellSyntaxError(last_line, "unexpected EOF")
        shown = "newline" if token.op == "\n" else token.op
        return ShellSyntaxError(token.line, f"'{shown}' unexpected")

    def parse_script(self) -> list[AndOr]:
        items: list[AndOr] = []
        while True:
            while (tok := self.peek()) is not None and tok.kind == "op" and tok.op == "\n":
                self.i += 1
            if self.peek() is None:
                return items
            items.append(self.parse_and_or())
            tok = self.peek()
            if tok is None:
                return items
            if tok.kind == "op" and tok.op in (";", "&", "\n"):
                self.i += 1
            else:
                raise self.unexpected(tok)

    def parse_and_or(self) -> AndOr:
        node = AndOr(self.parse_pipeline())
        while (tok := self.peek()) is not None and tok.kind == "op" and tok.op in ("&&", "||"):
            self.i += 1
            # A newline may follow && or ||, as in sh.
            while (nl := self.peek()) is not None and nl.kind == "op" and nl.op == "\n":
                self.i += 1
            node.rest.append((tok.op, self.parse_pipeline()))
        return node

    def parse_pipeline(self) -> Pipeline:
        commands = [self.parse_command()]
        while (tok := self.peek()) is not None and tok.kind == "op" and tok.op == "|":
            self.i += 1
            while (nl := self.peek()) is not None and nl.kind == "op" and nl.op == "\n":
                self.i += 1
            commands.append(self.parse_command())
        return Pipeline(commands)

    def parse_command(self) -> SimpleCommand:
        command = SimpleCommand()
        while (tok := self.peek()) is not None and tok.kind != "op":
            self.i += 1
            if tok.kind == "redir":
                command.redirections.append(tok.redirection)
                continue
            match = ASSIGNMENT_RE.match(tok.word.literal_prefix())
            if match and not command.words:
                command.assignments.append(Assignment(match.group(1), _strip_prefix(tok.word, match.end())))
            else:
                command.words.append(tok.word)
        if not (command.words or command.assignments or command.redirections):
            raise self.unexpected(self.peek())
        return command


def _strip_prefix(word: Word, length: int) -> Word:
    first = word.parts[0]
    rest = first.text[length:]
    parts = ([WordPart("lit", rest)] if rest else []) + word.parts[1:]
    return Word(parts or [WordPart("lit", "", quoted=True)])


def parse(text: str) -> list[AndOr]:
    """Parses a command line or script; raises ShellSyntaxError."""
    return _Parser(_Lexer(text).tokenize()).parse_script()
