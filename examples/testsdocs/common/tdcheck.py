"""The trusted driver of the Tests/Docs example tasks (the compare judge's protocol).

    python -I -B common/tdcheck.py tests   MUTANTS TESTS_FILE  test SEED
    python -I -B common/tdcheck.py doctest MUTANTS SOURCE_FILE test SEED

MUTANTS is a fixed file of the task.  It defines ``MODULE`` (the module the function
under test comes from), ``FUNCTION`` (its name), the correct function under that name,
``MUTANTS`` ({name: function}, wrong versions the answer must catch) and, for doctest,
``MIN_EXAMPLES``.

tests
    TESTS_FILE holds tests: top-level ``test*`` functions (no arguments), ``Test*``
    classes or unittest.TestCase classes with ``test*`` methods, plain ``assert``s.  The
    file is loaded afresh for the correct function and for each mutant, with ``MODULE``
    standing for a module whose ``FUNCTION`` is that version, and every test is run.  A
    small stand-in for ``pytest`` (raises, approx, fail, mark.parametrize) is provided.
doctest
    The docstring of the top-level function ``FUNCTION`` in SOURCE_FILE (read with
    ``ast``, never imported) holds doctest examples; they run against the correct
    function and against each mutant.

One ``case`` line per finding goes to a private copy of stdout (fd 1 points at stderr
before any candidate code runs, so its prints land in the log):

    case found yes                    | no | load_error <type> | ...
    case examples at_least_<N>        | only_<k>                       (doctest)
    case correct pass                 | fail <first failure>
    case mutant_<name> caught         | survived | unchecked

The judge compares them with the lines of the same driver run on the task's hidden
reference (tests or a docstring that pass and catch every mutant), which prints
``yes``, ``at_least_<N>``, ``pass`` and ``caught`` throughout.  A mutant counts as
caught when a test fails or raises on it (or an example fails); it is ``unchecked``
when the tests do not pass on the correct function, since failing tests catch
everything.  SEED is part of the protocol only: the check is deterministic.
"""

import ast
import doctest
import functools
import importlib.util
import inspect
import itertools
import math
import os
import re
import signal
import sys
import traceback
import types
import unittest

TEST_LIMIT_S = 2.0  # one test, one load of the tests file, one docstring run
SHOW = 160  # characters of a failure shown in a case line


class Timeout(BaseException):
    """BaseException, so that `except Exception` in a test cannot swallow it."""


def _alarm(signum, frame):
    raise Timeout()


def limited(fn, *args):
    """fn(*args), interrupted (again every TEST_LIMIT_S) when it runs too long."""
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, TEST_LIMIT_S, TEST_LIMIT_S)
    try:
        return fn(*args)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def private_stdout():
    fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return fd


def one_line(text):
    text = " ".join(str(text).split())
    return text if len(text) <= SHOW else text[:SHOW] + "..."


def why(exc, path=None):
    """The exception in one line; with ``path``, where in that file it came from."""
    if isinstance(exc, Timeout):
        return f"timed out ({TEST_LIMIT_S:g} s)"
    message = one_line(exc)
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if path and f.filename == path]
    if frames and frames[-1].line:
        text += f" (line {frames[-1].lineno}: {one_line(frames[-1].line)})"
    return text


def load_file(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # as an import would (dataclasses look their module up)
    spec.loader.exec_module(module)
    return module


def disguised(version, real):
    """``version`` under the correct function's name, module and docstring, so that
    only what it does tells a mutant apart."""
    if version is real or not isinstance(version, types.FunctionType):
        return version
    copy = types.FunctionType(version.__code__, version.__globals__, real.__name__, version.__defaults__,
                              version.__closure__)
    copy.__qualname__, copy.__module__, copy.__doc__ = real.__qualname__, real.__module__, real.__doc__
    return copy


def stand_in(target, version):
    """A module ``target.MODULE`` in sys.modules whose ``target.FUNCTION`` is ``version``; that function."""
    version = disguised(version, getattr(target, target.FUNCTION))
    module = types.ModuleType(target.MODULE)
    setattr(module, target.FUNCTION, version)
    sys.modules[target.MODULE] = module
    return version


# --- a small pytest --------------------------------------------------------------


class Failed(AssertionError):
    pass


class _Raises:
    def __init__(self, expected, match=None):
        self.expected, self.match = expected, match
        self.value = self.type = None

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        if kind is None:
            raise Failed(f"DID NOT RAISE {self.expected}")
        if not issubclass(kind, self.expected):
            return False
        if self.match is not None and not re.search(self.match, str(value)):
            raise AssertionError(f"{value!r} does not match {self.match!r}")
        self.type, self.value = kind, value
        return True


def _raises(expected, *args, match=None, **kwargs):
    context = _Raises(expected, match)
    if not args:
        return context
    with context:
        args[0](*args[1:], **kwargs)
    return context


class _Approx:
    def __init__(self, expected, rel=None, abs=None):
        self.expected, self.rel, self.abs = expected, rel, abs

    def _close(self, want, have):
        if isinstance(want, (list, tuple)):
            return isinstance(have, (list, tuple)) and len(want) == len(have) and all(
                self._close(w, h) for w, h in zip(want, have))
        try:
            return math.isclose(have, want, rel_tol=1e-6 if self.rel is None else self.rel,
                                abs_tol=1e-12 if self.abs is None else self.abs)
        except TypeError:
            return want == have

    def __eq__(self, other):
        return self._close(self.expected, other)

    __hash__ = None

    def __repr__(self):
        return f"approx({self.expected!r})"


def _parametrize(names, values, **kwargs):
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    sets = [dict(zip(names, v if len(names) > 1 else [v])) for v in values]

    def mark(fn):
        fn._kis_params = [*getattr(fn, "_kis_params", []), sets]
        return fn
    return mark


class _Mark:
    parametrize = staticmethod(_parametrize)

    def __getattr__(self, name):  # @pytest.mark.slow, @pytest.mark.skipif(...): no effect
        def marker(*args, **kwargs):
            if len(args) == 1 and callable(args[0]) and not kwargs:
                return args[0]
            return lambda fn: fn
        return marker


def _fail(message=""):
    raise Failed(message)


def pytest_stand_in():
    module = types.ModuleType("pytest")
    module.raises, module.approx, module.fail, module.mark = _raises, _Approx, _fail, _Mark()
    module.param = lambda *values, **kwargs: values
    return module


# --- tests -----------------------------------------------------------------------


def calls_of(fn):
    """The argument sets to call a test with: one empty set, or its parametrize sets."""
    layers = getattr(fn, "_kis_params", [])
    if not layers:
        return [{}]
    return [dict(itertools.chain.from_iterable(d.items() for d in combo)) for combo in itertools.product(*layers)]


def collect(module):
    """[(name, callable, kwargs)] of the module's tests, in the file's order."""
    tests = []
    for name, obj in list(vars(module).items()):
        if inspect.isfunction(obj) and name.startswith("test") and obj.__module__ == module.__name__:
            tests += [(name, obj, kwargs) for kwargs in calls_of(obj)]
        elif inspect.isclass(obj) and obj.__module__ == module.__name__ and (
                name.startswith("Test") or issubclass(obj, unittest.TestCase)):
            for method in [m for m in vars(obj) if m.startswith("test") and callable(getattr(obj, m))]:
                tests += [(f"{name}.{method}", method_runner(obj, method), kwargs)
                          for kwargs in calls_of(getattr(obj, method))]
    return tests


def method_runner(cls, method):
    def run(**kwargs):
        if issubclass(cls, unittest.TestCase):
            instance = cls(method)
            instance.setUp()
            try:
                getattr(instance, method)(**kwargs)
            finally:
                instance.tearDown()
            return
        instance = cls()
        if hasattr(instance, "setup_method"):
            instance.setup_method(getattr(instance, method))
        getattr(instance, method)(**kwargs)
    return run


def run_tests(path, target, version, load_number):
    """(tests, failures, load error): the tests file run against one version."""
    stand_in(target, version)
    sys.modules["pytest"] = pytest_stand_in()
    try:
        module = limited(load_file, path, f"candidate_tests_{load_number}")
    except BaseException as exc:  # noqa: BLE001 - the tests file does not load
        return [], [], why(exc)
    tests = collect(module)
    failures = []
    for name, fn, kwargs in tests:
        try:
            limited(functools.partial(fn, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - any failure, SystemExit too, fails the test
            failures.append(f"{name}: {why(exc, module.__file__)}")
    return tests, failures, ""


def check_tests(target, path, emit):
    tests, failures, error = run_tests(path, target, getattr(target, target.FUNCTION), 0)
    if error:
        emit("found", "load_error", error)
    else:
        emit("found", "yes" if tests else "no")
    valid = bool(tests) and not failures
    if not tests:
        emit("correct", "no_tests")
    else:
        emit("correct", "pass" if valid else f"fail {failures[0]}")
    for number, (name, mutant) in enumerate(target.MUTANTS.items(), 1):
        if not valid:
            emit(f"mutant_{name}", "unchecked")
            continue
        _, failures, error = run_tests(path, target, mutant, number)
        emit(f"mutant_{name}", "caught" if failures or error else "survived")


# --- doctest ---------------------------------------------------------------------


class _Runner(doctest.DocTestRunner):
    """Remembers the first failing example instead of printing a report."""

    first = ""

    def report_failure(self, out, test, example, got):
        self.first = self.first or (f"{one_line(example.source)} expected: {one_line(example.want) or '(nothing)'} "
                                    f"got: {one_line(got) or '(nothing)'}")

    def report_unexpected_exception(self, out, test, example, exc_info):
        self.first = self.first or f"{one_line(example.source)} raised {why(exc_info[1])}"


def docstring_of(path, function):
    """(docstring or None, line number, problem)."""
    try:
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read())
    except (OSError, SyntaxError, ValueError) as exc:
        return None, 0, f"unreadable {type(exc).__name__}"
    defs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == function]
    if not defs:
        return None, 0, f"no_function {function}"
    doc = ast.get_docstring(defs[-1])
    return doc, defs[-1].lineno, "" if doc else "no_docstring"


def run_doctest(target, doc, path, lineno, version):
    """(examples run, failures, first failure) of the docstring against one version."""
    globs = {"__name__": target.MODULE, target.FUNCTION: stand_in(target, version)}
    test = doctest.DocTestParser().get_doctest(doc, globs, target.FUNCTION, path, lineno)
    runner = _Runner(verbose=False, optionflags=doctest.NORMALIZE_WHITESPACE)
    result = limited(runner.run, test, None, lambda text: None)
    return result.attempted, result.failed, runner.first


def calls_function(example, function):
    return re.search(rf"\b{re.escape(function)}\s*\(", example.source) is not None and bool(
        example.want.strip() or example.exc_msg)


def check_doctest(target, path, emit):
    doc, lineno, problem = docstring_of(path, target.FUNCTION)
    examples = []
    if doc:
        try:
            examples = doctest.DocTestParser().get_examples(doc)
        except ValueError as exc:
            doc, problem = None, f"malformed_examples {one_line(exc)}"
    emit("found", "yes" if doc else problem)
    counted = sum(calls_function(e, target.FUNCTION) for e in examples)
    emit("examples", f"at_least_{target.MIN_EXAMPLES}" if counted >= target.MIN_EXAMPLES else f"only_{counted}")
    valid = False
    if not counted:
        emit("correct", "no_examples")
    else:
        try:
            _, failed, first = run_doctest(target, doc, path, lineno, getattr(target, target.FUNCTION))
        except BaseException as exc:  # noqa: BLE001 - e.g. a Timeout outside any example
            failed, first = 1, why(exc)
        valid = not failed
        emit("correct", "pass" if valid else f"fail {first}")
    for name, mutant in target.MUTANTS.items():
        if not valid:
            emit(f"mutant_{name}", "unchecked")
            continue
        try:
            _, failed, _ = run_doctest(target, doc, path, lineno, mutant)
        except BaseException:  # noqa: BLE001 - a run that breaks down caught the mutant
            failed = 1
        emit(f"mutant_{name}", "caught" if failed else "survived")


def main():
    out = private_stdout()

    def emit(name, *tokens):
        data = (" ".join(["case", name, *tokens]) + "\n").encode("utf-8", "replace")
        while data:
            data = data[os.write(out, data):]

    if len(sys.argv) != 6 or sys.argv[1] not in ("tests", "doctest") or sys.argv[4] != "test":
        print("usage: tdcheck.py tests|doctest MUTANTS FILE test SEED", file=sys.stderr)
        return 2
    mode, target_path, path = sys.argv[1:4]
    sys.path.insert(0, os.getcwd())  # -I leaves the working directory out
    target = load_file(target_path, "kis_target")
    (check_tests if mode == "tests" else check_doctest)(target, path, emit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
