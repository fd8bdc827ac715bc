import pytest

from kisystem.loop.extract import ExtractError, complete_from_prefix, extract_files, looks_like_code, safe_relpath

SINGLE = '''Here is an efficient implementation:

```python
def add(a, b):
    return a + b
```

This runs in O(1).
'''


def test_single_unnamed_block_goes_to_default_file():
    assert extract_files(SINGLE, "solution.py") == {"solution.py": "def add(a, b):\n    return a + b\n"}


def test_longest_unnamed_code_block_wins_over_examples_and_shell():
    answer = '''```python
def fib(n):
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a
```

Usage:

```python
print(fib(10))
```

Run it:

```bash
python solution.py && echo "a much longer shell line that is not the solution at all, really"
```
'''
    files = extract_files(answer, "solution.py")
    assert list(files) == ["solution.py"]
    assert files["solution.py"].startswith("def fib(n):")


@pytest.mark.parametrize("fence, name", [
    ("```python title=foo.py", "foo.py"),
    ('```python title="src/foo.py"', "src/foo.py"),
    ("```cpp:src/foo.cpp", "src/foo.cpp"),
    ("```python filename=foo.py", "foo.py"),
    ("```c main.c", "main.c"),
    ("```foo.py", "foo.py"),
    ("~~~python title=foo.py", "foo.py"),
])
def test_names_from_info_string(fence, name):
    closing = fence[:3]
    answer = f"Code:\n\n{fence}\nx = 1\n{closing}\n"
    assert extract_files(answer, "solution.py") == {name: "x = 1\n"}


@pytest.mark.parametrize("marker, name", [
    ("# file: foo.py", "foo.py"),
    ("// file: src/kernel.cu", "src/kernel.cu"),
    ("/* filename: a.c */", "a.c"),
    ("<!-- file: README.md -->", "README.md"),
])
def test_names_from_marker_line_which_is_removed(marker, name):
    answer = f"```\n{marker}\nbody();\n```\n"
    assert extract_files(answer, "solution.py") == {name: "body();\n"}


@pytest.mark.parametrize("line, name", [
    ("**foo.py**", "foo.py"),
    ("foo.py:", "foo.py"),
    ("### src/foo.cpp", "src/foo.cpp"),
    ("`kernel.cu`", "kernel.cu"),
    ("**File: `utils/io.h`**", "utils/io.h"),
    ("File: Makefile", "Makefile"),
    ("1. **main.c**", "main.c"),
    ("Here is the corrected `solution.py`:", "solution.py"),
])
def test_names_from_line_before_fence(line, name):
    answer = f"{line}\n\n```\ncode()\n```\n"
    assert extract_files(answer, "default.py") == {name: "code()\n"}


def test_prose_before_fence_is_not_a_name():
    answer = "Run `python solution.py` to see it work:\n```python\nx = 2\n```\n"
    assert extract_files(answer, "solution.py") == {"solution.py": "x = 2\n"}


def test_several_named_files_and_unnamed_example():
    answer = '''I split the code into a header and a source file.

**saxpy.h**
```cpp
#pragma once
void saxpy(int n, float a, const float* x, float* y);
```

**saxpy.cu**
```cuda
#include "saxpy.h"
__global__ void k(int n, float a, const float* x, float* y) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a * x[i] + y[i];
}
```

Compile with:
```bash
nvcc -O3 saxpy.cu
```
'''
    files = extract_files(answer, "solution.cu")
    assert set(files) == {"saxpy.h", "saxpy.cu", "solution.cu"}
    assert files["solution.cu"] == "nvcc -O3 saxpy.cu\n"  # only a shell block was left unnamed
    assert files["saxpy.cu"].startswith('#include "saxpy.h"')


def test_unnamed_block_does_not_overwrite_named_default():
    answer = "**solution.py**\n```python\nx = 1\n```\nExample:\n```python\nprint(x)\n```\n"
    assert extract_files(answer, "solution.py") == {"solution.py": "x = 1\n"}


def test_later_block_with_same_name_wins():
    answer = "```python title=a.py\nx = 1\n```\nFixed:\n```python title=a.py\nx = 2\n```\n"
    assert extract_files(answer, "s.py") == {"a.py": "x = 2\n"}


def test_unclosed_final_fence_still_yields_code():
    answer = "Sure!\n```python\ndef f():\n    return [\n        1,\n"
    assert extract_files(answer, "solution.py") == {"solution.py": "def f():\n    return [\n        1,\n"}


def test_unclosed_fence_cut_inside_closing_backticks():
    answer = "```c\nint main(void) { return 0; }\n``"
    assert extract_files(answer, "solution.c") == {"solution.c": "int main(void) { return 0; }\n"}


def test_longer_fence_holds_inner_triple_backticks():
    answer = "````markdown\n# Title\n\n```python\nx = 1\n```\n````\n"
    assert extract_files(answer, "README.md") == {"README.md": "# Title\n\n```python\nx = 1\n```\n"}


def test_think_sections_are_ignored():
    answer = "<think>\nMaybe:\n```python\nwrong = True\n```\n</think>\nFinal:\n```python\nright = True\n```\n"
    assert extract_files(answer, "solution.py") == {"solution.py": "right = True\n"}


def test_no_fence_code_answer_is_taken_whole():
    answer = "def add(a, b):\n    return a + b\n"
    assert extract_files(answer, "solution.py") == {"solution.py": answer}


def test_no_fence_prose_answer_gives_nothing():
    answer = "I am sorry, but I cannot help with that request.\nPlease provide more details about it.\n"
    assert extract_files(answer, "solution.py") == {}
    assert extract_files("", "solution.py") == {}


def test_no_fence_document_task_takes_whole_answer():
    answer = "# Fizzbuzz\n\nThis module prints numbers.\n"
    assert extract_files(answer, "README.md") == {"README.md": answer}


@pytest.mark.parametrize("fence", ["```python title=/etc/passwd", "```c:../../escape.c", "```python title=a/../../b.py"])
def test_unsafe_names_are_rejected(fence):
    with pytest.raises(ExtractError, match="outside the workspace"):
        extract_files(f"{fence}\nx\n```\n", "solution.py")


def test_unsafe_marker_is_rejected():
    with pytest.raises(ExtractError):
        extract_files("```\n# file: /tmp/x.py\nx = 1\n```\n", "solution.py")


@pytest.mark.parametrize("name, clean", [
    ("a.py", "a.py"), ("./src/a.py", "src/a.py"), ("src\\a.py", "src/a.py"),
    ("/abs.py", None), ("../a.py", None), ("a/../../b", None), ("C:/x.py", None), ("", None), (".", None),
])
def test_safe_relpath(name, clean):
    assert safe_relpath(name) == clean


def test_looks_like_code():
    assert looks_like_code("#include <stdio.h>\nint main() {\n  return 0;\n}\n")
    assert not looks_like_code("This is prose.\nIt has sentences only\nAnd nothing else\n")


PREFIX = 'def add(a, b):\n    """Add."""\n'


def test_complete_from_prefix_cuts_at_first_stop():
    completion = "    return a + b\n\n\ndef test():\n    assert add(1, 2) == 3\n"
    assert complete_from_prefix(PREFIX, completion, ["\ndef ", "\nif"]) == PREFIX + "    return a + b\n"


def test_complete_from_prefix_keeps_nested_defs():
    completion = "    def helper(x):\n        return x\n    return helper(a) + b\nprint(add(1, 2))\n"
    out = complete_from_prefix(PREFIX, completion, ["\ndef ", "\nprint("])
    assert out == PREFIX + "    def helper(x):\n        return x\n    return helper(a) + b\n"


def test_complete_from_prefix_stop_spanning_the_boundary():
    assert complete_from_prefix(PREFIX, "def other():\n    pass\n", ["\ndef "]) == PREFIX + "\n"


def test_complete_from_prefix_ignores_stops_inside_the_prefix():
    prefix = "import os\n\ndef f():\n"
    assert complete_from_prefix(prefix, "    return 1\n", ["\ndef "]) == prefix + "    return 1\n"


def test_complete_from_prefix_strips_echoed_prefix_and_handles_no_stop():
    assert complete_from_prefix(PREFIX, PREFIX + "    return 0", []) == PREFIX + "    return 0\n"


def test_whole_statements_drops_an_example_cut_off_at_the_token_limit():
    from kisystem.loop.extract import whole_statements

    code = "def f(x):\n    return x + 1\n\n# Example usage\nprint(f(1), f([4, 2, 1"
    assert whole_statements(code) == "def f(x):\n    return x + 1\n\n# Example usage\n"
    whole = "import math\n\ndef f(x):\n    return math.floor(x)\n"
    assert whole_statements(whole) == whole  # nothing to trim
    cut_in_def = "def f(x):\n    return (x +"
    assert whole_statements(cut_in_def) == cut_in_def  # no whole prefix: left as it is, for the error to say so
