import dataclasses
import tomllib
from pathlib import Path

import pytest

from kisystem.errors import UsageError
from kisystem.loop.taskspec import (
    CompletionSpec, PhaseSpec, ProfileSpec, TaskSpec, TaskSpecError, dump_task, dumps_toml, load_task, load_tasks,
)

DATA = Path(__file__).parent / "data" / "tasks"

MINIMAL = '''
id = "t1"
domain = "Python/General"
language = "python"
prompt = "Write add(a, b)."

[test]
command = "python -m pytest -q"
'''


def write(tmp_path: Path, text: str, name: str = "spec.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str, **kwargs) -> str:
    path = write(tmp_path, text)
    with pytest.raises(TaskSpecError) as info:
        load_task(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    return message[len(f"{path}: "):]


def test_minimal_python_spec_gets_defaults(tmp_path):
    spec = load_task(write(tmp_path, MINIMAL))
    assert spec.solution_file == "solution.py"
    assert spec.build == PhaseSpec("python -m py_compile solution.py", 300.0)
    assert spec.test == PhaseSpec("python -m pytest -q", 120.0)
    assert spec.profile is None and spec.completion is None
    assert spec.target_score is None and spec.max_iterations is None and spec.priority is None
    assert dict(spec.starter) == {} and dict(spec.fixed) == {}


def test_sample_cuda_spec(tmp_path):
    spec = load_task(DATA / "saxpy.toml")
    assert spec.id == "cuda.saxpy-1" and spec.domain == "CUDA/Kernel" and spec.language == "cuda"
    assert spec.solution_file == "solution.cu"
    assert spec.profile == ProfileSpec("./saxpy_test --bench", 900.0, 0.004)
    assert spec.test.timeout_s == 60.0 and spec.build.timeout_s == 300.0
    assert spec.fixed["saxpy_test.cu"] == (DATA / "saxpy_test.cu").read_text()
    assert "TODO" in spec.starter["solution.cu"]
    assert (spec.target_score, spec.max_iterations, spec.priority, spec.mode_hint) == (85, 8, 60.5, "chat")


def test_completion_prefix_defaults_to_prompt_for_python():
    spec = load_task(DATA / "fizzbuzz.toml")
    assert spec.completion == CompletionSpec(spec.prompt, ("\ndef ", "\nif __name__"))
    assert "tests/test_fizzbuzz.py" in spec.fixed


def test_non_python_without_build_has_none():
    spec = load_task(DATA / "readme.toml")
    assert spec.build is None and spec.solution_file == "README.md"


def test_spec_is_frozen():
    spec = load_task(DATA / "fizzbuzz.toml")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.id = "x"
    with pytest.raises(TypeError):
        spec.fixed["x.py"] = "boom"


def test_load_tasks_reads_directories_sorted(tmp_path):
    specs = load_tasks([DATA])
    assert [s.id for s in specs] == ["py_fizzbuzz", "docs.readme", "cuda.saxpy-1"]


def test_load_tasks_rejects_duplicate_ids(tmp_path):
    write(tmp_path, MINIMAL, "a.toml")
    write(tmp_path, MINIMAL, "b.toml")
    with pytest.raises(TaskSpecError, match=r"b\.toml: field 'id': 't1' is already used by .*a\.toml"):
        load_tasks([tmp_path])


def test_load_tasks_missing_path(tmp_path):
    with pytest.raises(TaskSpecError, match="no such file"):
        load_tasks([tmp_path / "nope.toml"])


def test_unknown_domain_lists_known(tmp_path):
    msg = error_of(tmp_path, MINIMAL.replace("Python/General", "Rust/Wasm"))
    assert msg.startswith("field 'domain': 'Rust/Wasm' is not a known domain (known: CUDA/Kernel, C++/System")


def test_extra_known_domains(tmp_path):
    spec = load_task(write(tmp_path, MINIMAL.replace("Python/General", "Rust/Wasm")), known_domains=["Rust/Wasm"])
    assert spec.domain == "Rust/Wasm"


@pytest.mark.parametrize("old, new, expected", [
    ('prompt = "Write add(a, b)."\n', "", "missing required field 'prompt'"),
    ('prompt = "Write add(a, b)."', 'prompt = "  "', "field 'prompt': must be a non-empty string"),
    ('command = "python -m pytest -q"', 'command = ""', "field 'test.command': must be a non-empty string"),
    ('command = "python -m pytest -q"', "timeout_s = 5", "missing required field 'test.command'"),
    ("[test]", "[tset]", "unknown field 'tset'"),
    ('command = "python', 'comand = "python', "unknown field 'test.comand'"),
    ('language = "python"', 'language = "rust"', "field 'language': 'rust' is not one of python, c, cpp"),
    ('id = "t1"', 'id = "a b"', "field 'id': 'a b' may only hold"),
    ('id = "t1"', "id = 3", "field 'id': must be a non-empty string"),
])
def test_field_errors(tmp_path, old, new, expected):
    assert old in MINIMAL
    assert error_of(tmp_path, MINIMAL.replace(old, new)).startswith(expected)


@pytest.mark.parametrize("extra, expected", [
    ("target_score = 101", "field 'target_score': must be an integer from 0 to 100 (got 101)"),
    ("target_score = true", "field 'target_score': must be an integer from 0 to 100"),
    ("max_iterations = 0", "field 'max_iterations': must be an integer from 1 to 50 (got 0)"),
    ("priority = -1", "field 'priority': must be a number from 0 to 100"),
    ('mode_hint = "turbo"', "field 'mode_hint': 'turbo' is not one of chat, completion"),
    ('solution_file = "../x.py"', "field 'solution_file': '../x.py' must be a relative path"),
    ('solution_file = "/tmp/x.py"', "field 'solution_file': '/tmp/x.py' must be a relative path"),
    ('fixed_from = ["missing.py"]', "field 'fixed_from': cannot read 'missing.py'"),
    ('fixed_from = "a.py"', "field 'fixed_from': must be a list"),
])
def test_top_level_value_errors(tmp_path, extra, expected):
    assert error_of(tmp_path, extra + "\n" + MINIMAL).startswith(expected)


@pytest.mark.parametrize("tables, expected", [
    ('[fixed]\n"/etc/passwd" = "x"\n', "field 'fixed./etc/passwd': '/etc/passwd' must be a relative path"),
    ('[fixed]\n"solution.py" = "x"\n', "field 'solution_file': 'solution.py' is a fixed file"),
    ('[starter]\n"a.py" = 3\n', "field 'starter.a.py': must be a string"),
    ('[profile]\ncommand = "p"\nreference_time_s = 0\n', "field 'profile.reference_time_s': must be a number above 0"),
    ('[profile]\ncommand = "p"\ntimeout_s = "9"\n', "field 'profile.timeout_s': must be a number above 0"),
    ('[completion]\nstop = "x"\n', "field 'completion.stop': must be a list of non-empty strings"),
    ('[completion]\nprefx = "x"\n', "unknown field 'completion.prefx'"),
])
def test_table_errors(tmp_path, tables, expected):
    assert error_of(tmp_path, MINIMAL + "\n" + tables).startswith(expected)


def test_test_table_is_required(tmp_path):
    assert error_of(tmp_path, MINIMAL.split("[test]")[0]) == "missing required field 'test'"


def test_completion_prefix_required_outside_python(tmp_path):
    text = MINIMAL.replace('"python"', '"c"') + '\n[completion]\nstop = ["}"]\n'
    assert error_of(tmp_path, text) == "missing required field 'completion.prefix'"


def test_invalid_toml_names_line_and_column(tmp_path):
    msg = error_of(tmp_path, 'id = "t1"\ndomain = \n')
    assert msg.startswith("invalid TOML:") and "line 2" in msg and "column" in msg


def test_fixed_from_conflicts_with_fixed_table(tmp_path):
    write(tmp_path, "x", "helper.py")
    text = 'fixed_from = ["helper.py"]\n' + MINIMAL + '\n[fixed]\n"helper.py" = "y"\n'
    assert error_of(tmp_path, text) == "field 'fixed_from': 'helper.py' is given twice"


def test_unreadable_file(tmp_path):
    with pytest.raises(TaskSpecError, match="cannot read"):
        load_task(tmp_path / "absent.toml")
    assert issubclass(TaskSpecError, UsageError) and TaskSpecError("x").exit_code == 2


NASTY = [
    "plain",
    "multi\nline\n",
    "ends with quote'",
    "has ''' triple single",
    'has """ triple double and \\ backslash\n',
    "tab\tand\r\ncrlf\n",
    "control \x00 \x1b \x7f chars\n",
    "\nstarts with newline",
    "unicode: äöü — λ 🚀\n",
    "ends with two quotes''",
    'ends with double "',
]


@pytest.mark.parametrize("text", NASTY)
def test_dumps_toml_strings_round_trip(text):
    doc = {"s": text, "t": {"key with space": text, "list": [text, "x"]}}
    assert tomllib.loads(dumps_toml(doc)) == doc


def full_spec() -> TaskSpec:
    return TaskSpec(
        id="x.full", domain="C++/System", language="cpp", prompt="Do it.\n'''\n\"\"\"\\n\n",
        solution_file="src/solution.cpp", test=PhaseSpec("make test", 30.5),
        build=PhaseSpec("make", 300.0), profile=ProfileSpec("make bench", 900.0, 1.25),
        starter={"src/solution.cpp": "int f() { return 0; }\n"},
        fixed={"tests/test.cpp": "#include \"x\"\n", "Makefile": "all:\n\tg++ -O2 src/solution.cpp\n"},
        mode_hint="completion", target_score=90, max_iterations=5, priority=12.5,
        completion=CompletionSpec("int f() {", ("\n}", "\nint ")),
    )


@pytest.mark.parametrize("spec", [full_spec(), load_task(DATA / "fizzbuzz.toml"), load_task(DATA / "saxpy.toml")])
def test_dump_task_round_trips(tmp_path, spec):
    path = write(tmp_path, dump_task(spec))
    assert load_task(path, known_domains=[spec.domain]) == spec


def test_a_spec_from_text_names_its_label_in_errors():
    from kisystem.loop.taskspec import TaskSpecError, load_task_text

    good = 'id = "t"\ndomain = "Python/General"\nlanguage = "python"\nprompt = "p"\n[test]\ncommand = "true"\n'
    assert load_task_text(good, "queue task 7").id == "t"
    with pytest.raises(TaskSpecError, match=r"^queue task 7: .*domain"):
        load_task_text(good.replace("Python/General", "Rust/Wasm"), "queue task 7")
