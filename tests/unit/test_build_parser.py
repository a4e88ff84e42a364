"""The Containerfile parser and Docker's word rules, against the examples Docker documents
(https://docs.docker.com/reference/dockerfile/): directives, escapes, continuations with
comments, heredocs, exec/shell forms, variable substitution, .dockerignore patterns."""
import pytest

from fastbox.build import context, expand, parser
from fastbox.build.parser import DockerfileError


def cmds(text):
    return [(i.cmd, i.rest, i.line) for i in parser.parse(text).instructions]


def test_continuation_with_comment_and_blank_lines_inside():
    df = parser.parse("FROM busybox\nRUN echo hello \\\n# comment\n\n  world\nCMD x\n")
    assert [(i.cmd, i.rest) for i in df.instructions] == [
        ("FROM", "busybox"), ("RUN", "echo hello   world"), ("CMD", "x")]
    assert [i.line for i in df.instructions] == [1, 2, 6]


def test_escape_directive_backtick_as_in_dockers_windows_example():
    text = "# escape=`\n\nFROM busybox\nCOPY testfile.txt c:\\\nRUN dir c:\\ `\n  /w\n"
    df = parser.parse(text)
    assert df.escape == "`"
    # with ` as escape, a trailing backslash is a plain character, not a continuation
    assert [(i.cmd, i.rest) for i in df.instructions] == [
        ("FROM", "busybox"), ("COPY", "testfile.txt c:\\"), ("RUN", "dir c:\\   /w")]


def test_directives_only_at_the_top():
    df = parser.parse("FROM busybox\n# escape=`\nRUN a \\\n b\n")
    assert df.escape == "\\" and df.instructions[1].rest == "a  b"
    df = parser.parse("# syntax=docker/dockerfile:1\n# escape=\\\nFROM x\n")
    assert df.directives == {"syntax": "docker/dockerfile:1", "escape": "\\"}
    with pytest.raises(DockerfileError, match="Dockerfile:1: invalid escape token"):
        parser.parse("# escape=x\nFROM a\n")
    with pytest.raises(DockerfileError, match=":2: only one escape"):
        parser.parse("# escape=`\n# escape=`\nFROM a\n")


def test_heredocs_run_and_copy():
    text = ("FROM busybox\nRUN <<EOF\necho one\necho two\nEOF\n"
            "COPY <<-'A' <<B /dst/\n\tliteral $X\n\tA\nb $Y\nB\nCMD [\"x\"]\n")
    df = parser.parse(text)
    run, copy, cmd = df.instructions[1:]
    assert run.heredocs[0].body == "echo one\necho two\n" and run.heredocs[0].expand
    a, b = copy.heredocs
    assert (a.name, a.body, a.expand, a.chomp) == ("A", "literal $X\n", False, True)
    assert (b.name, b.body, b.expand) == ("B", "b $Y\n", True)
    assert cmd.json == ["x"] and cmd.line == 11


def test_unterminated_heredoc_names_its_line():
    with pytest.raises(DockerfileError, match="Dockerfile:2: unterminated heredoc EOF"):
        parser.parse("FROM a\nRUN <<EOF\necho\n")


def test_exec_and_shell_forms():
    df = parser.parse('FROM a\nCMD ["echo", "hi"]\nCMD echo hi\nCMD [not json\nENTRYPOINT ["a", 1]\n')
    assert df.instructions[1].json == ["echo", "hi"]
    assert df.instructions[2].json is None
    assert df.instructions[3].json is None  # not JSON: the shell form, as Docker reads it
    assert df.instructions[4].json is None


@pytest.mark.parametrize("text, line, what", [
    ("FROM a\nFOO bar\n", 2, "unknown instruction: FOO"),
    ("FROM a\n\nRUN --bogus=1 true\n", 3, "unknown flag: --bogus"),
    ("FROM a\nSHELL /bin/bash -c\n", 2, "SHELL requires the arguments to be in JSON form"),
    ("FROM a\nENV\n", 2, "ENV requires at least one argument"),
    ("FROM a\nCOPY --from x y\n", 2, "COPY: --from needs a value"),
])
def test_malformed_files_give_their_line(text, line, what):
    with pytest.raises(DockerfileError) as e:
        parser.parse(text)
    assert f"Dockerfile:{line}: {what}" in str(e.value)


def test_flags():
    i = parser.parse("FROM --platform=linux/amd64 a AS b\n").instructions[0]
    assert i.flags == {"platform": ["linux/amd64"]} and i.rest == "a AS b"
    i = parser.parse("FROM a\nRUN --mount=type=cache,target=/c --mount=type=tmpfs,target=/t ls\n").instructions[1]
    assert i.flags["mount"] == ["type=cache,target=/c", "type=tmpfs,target=/t"] and i.rest == "ls"


# Docker's documented substitution examples.
@pytest.mark.parametrize("word, env, want", [
    ("$foo", {"foo": "bar"}, "bar"),
    ("${foo}", {"foo": "bar"}, "bar"),
    ("${foo}_x", {"foo": "bar"}, "bar_x"),
    ("${foo:-world}", {}, "world"),
    ("${foo:-world}", {"foo": ""}, "world"),
    ("${foo-world}", {"foo": ""}, ""),
    ("${foo:+set}", {"foo": "x"}, "set"),
    ("${foo:+set}", {}, ""),
    ("\\$foo", {"foo": "bar"}, "$foo"),
    ("'$foo'", {"foo": "bar"}, "$foo"),
    ('"$foo x"', {"foo": "bar"}, "bar x"),
    ('"\\$foo"', {"foo": "bar"}, "$foo"),
    ("a$", {}, "a$"),
    ("${nested:-${foo}}", {"foo": "in"}, "in"),
])
def test_substitution(word, env, want):
    assert expand.expand(word, env) == want


def test_required_variable_and_bad_substitution():
    with pytest.raises(expand.ExpandError, match="foo: needed"):
        expand.expand("${foo:?needed}", {})
    with pytest.raises(expand.ExpandError, match="missing"):
        expand.expand("${foo", {"foo": "x"})


def test_split_raw_keeps_quotes_for_expansion():
    assert expand.split_raw('a "b c" d\\ e \'f g\'') == ['a', '"b c"', 'd\\ e', "'f g'"]
    assert expand.expand_words('"a b" $x', {"x": "y"}) == ["a b", "y"]


# .dockerignore: Docker's documented examples.
@pytest.mark.parametrize("lines, path, ignored", [
    (["*/temp*"], "somedir/temporary.txt", True),
    (["*/temp*"], "temp", False),
    (["*/*/temp*"], "somedir/subdir/temporary.txt", True),
    (["temp?"], "tempa", True),
    (["temp?"], "tempab", False),
    (["**/*.go"], "a/b/c.go", True),
    (["**/*.go"], "c.go", True),
    (["*.md", "!README.md"], "README.md", False),
    (["*.md", "!README.md"], "CHANGES.md", True),
    (["*.md", "!README*.md", "README-secret.md"], "README-secret.md", True),
    (["*.md", "!README*.md", "README-secret.md"], "README-public.md", False),
    (["*.md", "README-secret.md", "!README*.md"], "README-secret.md", False),
    (["dir"], "dir/sub/file", True),
    (["dir", "!dir/keep"], "dir/keep", False),
    (["/abs/x"], "abs/x", True),
])
def test_dockerignore(lines, path, ignored):
    assert context.IgnoreRules(lines).ignored(path) is ignored
