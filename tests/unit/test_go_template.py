"""The Go-template subset behind --format: what Docker's templates print, and that an
unknown field or function is an error, never an empty string."""
import pytest

from fastbox.cli.go_template import Template, TemplateError, format_rows, tabwriter

DATA = {"Names": "web", "State": {"Status": "running", "Pid": 5, "Running": True},
        "Labels": {"a": "1", "b": "<&>"}, "Args": ["x", "y"], "Zero": 0, "Nil": None}


@pytest.mark.parametrize("text, expected", [
    ("{{.Names}}", "web"),
    ("{{ .Names }}", "web"),
    ("{{.State.Status}}/{{.State.Pid}}", "running/5"),
    ("{{json .State}}", '{"Status":"running","Pid":5,"Running":true}'),
    ("{{json .Labels}}", '{"a":"1","b":"\\u003c\\u0026\\u003e"}'),  # Go escapes HTML
    ("{{json .Args}}", '["x","y"]'),
    ("{{.Names | upper}}", "WEB"),
    ("{{upper .Names}}", "WEB"),
    ("{{lower \"ABC\"}}", "abc"),
    ("{{index .Labels \"a\"}}", "1"),
    ("{{index .Labels \"missing\"}}", ""),
    ("{{index .Args 1}}", "y"),
    ("{{join .Args \",\"}}", "x,y"),
    ("{{printf \"%s:%d\" .Names .State.Pid}}", "web:5"),
    ("{{printf \"%q\" .Names}}", "'web'"),
    ("{{range .Args}}[{{.}}]{{end}}", "[x][y]"),
    ("{{range .Nil}}x{{else}}none{{end}}", "none"),
    ("{{if .State.Running}}up{{else}}down{{end}}", "up"),
    ("{{if .Zero}}a{{else if .Names}}b{{else}}c{{end}}", "b"),
    ("{{with .State}}{{.Status}}{{end}}", "running"),
    ("{{.Args}}", "[x y]"),
    ("{{.Labels}}", "map[a:1 b:<&>]"),
    ("{{.Nil}}", "<no value>"),
    ("{{len .Args}}", "2"),
    ("{{lower (upper .Names)}}", "web"),
    ("a  {{- .Names -}}  b", "awebb"),
    ("{{/* a comment */}}x", "x"),
    ("{{$.Names}}", "web"),
])
def test_renders_like_go(text, expected):
    assert Template(text).execute(DATA) == expected


@pytest.mark.parametrize("text", [
    "{{.Nope}}", "{{.State.Nope}}", "{{.Names.Deeper}}", "{{nofunc .}}", "{{if .Names}}x",
    "{{.Names", "{{end}}", "{{\"unterminated}}", "{{}}",
])
def test_errors_are_errors(text):
    with pytest.raises(TemplateError):
        Template(text).execute(DATA)


def test_unknown_field_error_names_the_field():
    with pytest.raises(TemplateError, match="can't evaluate field Nope"):
        Template("{{.Nope}}").execute(DATA)


def test_template_error_exits_1_like_docker():
    assert TemplateError.exit_code == 1


class Row:
    """Fields as properties and a method with an argument, like Docker's contexts."""

    def __init__(self, name):
        self._name = name

    @property
    def Names(self):
        return self._name

    def Label(self, key):
        return {"env": "prod"}.get(key, "")

    def template_data(self):
        return {"Names": self._name}


def test_methods_take_arguments_and_json_dot_uses_template_data():
    assert Template('{{.Label "env"}}').execute(Row("a")) == "prod"
    assert Template("{{json .}}").execute(Row("a")) == '{"Names":"a"}'
    with pytest.raises(TemplateError):
        Template("{{._name}}").execute(Row("a"))  # only exported (capitalised) fields


def test_table_has_a_header_and_aligned_columns():
    lines = format_rows("table {{.Names}}\\t{{.Label \"env\"}}", [Row("a"), Row("bbbbbbbbbbbb")],
                        default="", titles={"Names": "NAMES", "Label": "LABEL"})
    assert lines == ["NAMES" + " " * 10 + "LABEL",  # 12 + 3 of padding
                     "a" + " " * 14 + "prod",
                     "bbbbbbbbbbbb" + " " * 3 + "prod"]


def test_named_formats():
    rows = [Row("a"), Row("b")]
    assert format_rows("json", rows, default="", titles={}) == ['{"Names":"a"}', '{"Names":"b"}']
    assert format_rows("{{.Names}}", rows, default="", titles={}) == ["a", "b"]
    assert format_rows(None, rows, default="{{.Names}}", titles={"Names": "NAMES"}) == \
        ["NAMES", "a", "b"]
    assert format_rows("table", rows, default="{{.Names}}", titles={"Names": "NAMES"}) == \
        ["NAMES", "a", "b"]


def test_tabwriter_pads_like_docker():
    # minwidth 10, padding 3; the last cell is not padded
    assert tabwriter(["A\tB\tC", "long-cell-x\tb\tc"]) == ["A" + " " * 13 + "B" + " " * 9 + "C",
                                                         "long-cell-x   b" + " " * 9 + "c"]


def test_range_declares_its_variables_as_go_does():
    nets = {"NetworkSettings": {"Networks": {"zeta": {"IPAddress": "10.67.0.2"},
                                             "bridge": {"IPAddress": "10.66.0.2"}},
                                "Ports": {"80/tcp": [{"HostPort": "8080"}]}}}
    # a map in its keys' order, as Go ranges over one
    assert Template("{{range $k, $v := .NetworkSettings.Networks}}{{$k}}={{$v.IPAddress}} {{end}}"
                    ).execute(nets) == "bridge=10.66.0.2 zeta=10.67.0.2 "
    assert Template("{{range $p, $conf := .NetworkSettings.Ports}}{{$p}} -> "
                    "{{range $conf}}{{.HostPort}}{{end}}{{end}}").execute(nets) == "80/tcp -> 8080"
    assert Template("{{range $v := .L}}{{$v}},{{end}}").execute({"L": ["a", "b"]}) == "a,b,"
    assert Template("{{range $i, $v := .L}}{{$i}}{{$v}} {{end}}").execute({"L": ["a", "b"]}) == "0a 1b "
    with pytest.raises(TemplateError, match="undefined variable: \\$v"):
        Template("{{range .L}}{{end}}{{$v}}").execute({"L": []})


def test_a_field_of_a_parenthesised_value():
    data = {"NetworkSettings": {"Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}},
            "L": [{"Name": "a", "Sub": {"X": 1}}]}
    # Docker's idiom for a published port
    assert Template('{{(index (index .NetworkSettings.Ports "80/tcp") 0).HostPort}}'
                    ).execute(data) == "8080"
    assert Template("{{(index .L 0).Sub.X}} {{ (index .L 0).Name | printf \"%s!\" }}"
                    ).execute(data) == "1 a!"
    with pytest.raises(TemplateError, match="can't evaluate field Nope"):
        Template("{{(index .L 0).Nope}}").execute(data)
