"""The judge's side of the calls judge: run in the judge's directory, sandboxed.

    python -I judge.py record ENTRY TESTS REFERENCE SEED
        runs check(candidate) of TESTS with the REFERENCE's ENTRY as the candidate,
        writes each call's arguments to calls.jsonl and prints {"groups": G, "calls": N}
        (or {"error": why}: the reference fails its own tests)
    python -I judge.py replay ENTRY TESTS SEED SOLUTION < answers
        runs check() again, the candidate's answers (one line per recorded call) standing
        in for the calls, and prints {"passed": P, "total": T, "detail": first failure}

check()'s top-level statements form the tests: each group ends with a statement holding
an assert (the statements before it set it up), and counts as one test.  Python's
random is seeded per group from SEED, the same in both modes, so the calls repeat.
The answers are decoded strictly into plain values (see codec.py).
"""

import ast
import json
import os
import random
import signal
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # -I leaves the script's directory out
import codec  # noqa: E402

CALLS_FILE = "calls.jsonl"
GROUP_LIMIT_S = 5.0  # replay: the answers could make a test loop for long
REPLAY_LIMIT_S = 30.0
SHOW = 200


class Failure(BaseException):
    """A test failed for a reason the judge states itself (BaseException: the tests cannot catch it)."""

    def __init__(self, text):
        super().__init__(text)
        self.text = text


class GroupTimeout(BaseException):
    pass


# --- tests ------------------------------------------------------------------------


def has_assert(stmt):
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return False
    return any(isinstance(node, ast.Assert) for node in ast.walk(stmt))


def split_tests(source):
    """Groups of check()'s top-level statements, each ending with one assert-holding statement."""
    checks = [n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == "check"]
    if not checks:
        raise ValueError("the tests define no check(candidate)")
    groups, pending = [], []
    for stmt in checks[-1].body:
        pending.append(stmt)
        if has_assert(stmt):
            groups.append(pending)
            pending = []
    if pending:
        if groups:
            groups[-1].extend(pending)
        else:
            groups.append(pending)
    return groups


def capturing(stmt):
    """`assert a == b` becomes `_kis_actual = a; _kis_expected = b; assert _kis_actual == _kis_expected`."""
    test = getattr(stmt, "test", None)
    if not (isinstance(stmt, ast.Assert) and isinstance(test, ast.Compare) and len(test.ops) == 1):
        return [stmt]
    names = [ast.Name("_kis_actual", ast.Store()), ast.Name("_kis_expected", ast.Store())]
    assigns = [ast.Assign([n], v) for n, v in zip(names, [test.left, test.comparators[0]])]
    check = ast.Assert(ast.Compare(ast.Name("_kis_actual", ast.Load()), test.ops,
                                   [ast.Name("_kis_expected", ast.Load())]), stmt.msg)
    out = assigns + [check]
    for node in out:
        ast.copy_location(node, stmt)
    return out


def run_group(group, env):
    for stmt in group:
        env.pop("_kis_actual", None)
        code = compile(ast.fix_missing_locations(ast.Module(capturing(stmt), [])), "<tests>", "exec")
        exec(code, env)


def load_tests(path):
    with open(path, encoding="utf-8") as fh:
        source = fh.read()
    env = {"__name__": "__kisystem_tests__"}
    exec(compile(source, "<tests>", "exec"), env)
    return source, env, split_tests(source)


def seed_group(seed, number):
    random.seed(f"{seed}/{number}")


def call_key(number, args, kwargs, strict=False):
    return codec.dumps([number, list(args), kwargs], strict=strict)


def short(value):
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - e.g. an int too long for str()
        return f"<{type(value).__name__} that cannot be shown>"
    return text if len(text) <= SHOW else text[:SHOW] + "..."


def describe(exc, group, env, lines):
    """Where a test failed and why, in two or three lines."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == "<tests>"]
    lineno = frames[-1].lineno if frames else group[-1].lineno
    out = ["  " + lines[lineno - 1].strip()]
    if isinstance(exc, Failure):
        out.append("  " + exc.text)
    elif isinstance(exc, GroupTimeout):
        out.append(f"  the tests timed out on the answers ({GROUP_LIMIT_S:g} s)")
    elif isinstance(exc, AssertionError) and "_kis_actual" in env:
        out.append(f"  actual: {short(env['_kis_actual'])}  expected: {short(env['_kis_expected'])}")
    elif not isinstance(exc, AssertionError):
        out.append(f"  {type(exc).__name__} in the tests on the answer: {str(exc)[:SHOW]}")
    return "\n".join(out)


def private_stdout():
    """A private fd for the result; the tests' own prints go to stderr."""
    fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return fd


def emit(fd, result):
    data = (json.dumps(result) + "\n").encode()
    while data:
        data = data[os.write(fd, data):]


def install(env, entry, proxy):
    env["candidate"] = env[entry] = proxy


# --- record -----------------------------------------------------------------------


def recorder(number, function, out):
    def proxy(*args, **kwargs):
        out.append(call_key(number, args, kwargs, strict=True))  # before the call: it may change them
        return function(*args, **kwargs)
    return proxy


def record(entry, tests, reference, seed):
    ref_env = {"__name__": "__kisystem_reference__"}
    with open(reference, encoding="utf-8") as fh:
        exec(compile(fh.read(), reference, "exec"), ref_env)
    function = ref_env.get(entry)
    if not callable(function):
        return {"error": f"{reference} defines no function {entry}()"}
    source, env, groups = load_tests(tests)
    lines, calls = source.splitlines(), []
    for number, group in enumerate(groups):
        install(env, entry, recorder(number, function, calls))
        seed_group(seed, number)
        try:
            run_group(group, env)
        except Exception as exc:  # noqa: BLE001 - the reference failing its tests is reported
            return {"error": f"the reference fails test {number + 1} of {len(groups)}:\n"
                             + describe(exc, group, env, lines) + f"\n  ({type(exc).__name__}: {str(exc)[:SHOW]})"}
    with open(CALLS_FILE, "w", encoding="ascii") as fh:
        fh.writelines(line + "\n" for line in calls)
    return {"groups": len(groups), "calls": len(calls)}


# --- replay -----------------------------------------------------------------------


def reply(line, solution):
    """The candidate's answer to one call: its value, or a Failure it stands for."""
    try:
        envelope = codec.parse(line)
    except codec.DecodeError as err:
        raise Failure(f"unreadable answer: {err}") from None
    if type(envelope) is not dict or len(envelope) != 1:
        raise Failure("unreadable answer")
    (kind, body), = envelope.items()
    if kind == "v":
        try:
            return codec.from_tree(body)
        except codec.DecodeError as err:
            raise Failure(f"unreadable answer: {err}") from None
    if kind == "e" and type(body) is list and len(body) == 3 and all(type(b) is str for b in body[:2]):
        at = f" ({solution} line {body[2]})" if type(body[2]) is int else ""
        raise Failure(f"raised {body[0][:SHOW]}: {body[1][:SHOW]}{at}")
    if kind == "t" and type(body) is str:
        raise Failure(f"timed out after {body[:20]}")
    if kind == "load" and type(body) is str:
        raise Failure(body[:SHOW * 2])
    raise Failure("unreadable answer")


def replayer(number, recorded, answers, total_calls, solution):
    """The candidate for group ``number``: the answers at the recorded calls' positions."""
    made = [0]

    def proxy(*args, **kwargs):
        k = made[0]
        made[0] += 1
        if k >= len(recorded):
            raise Failure("the tests made more calls than were recorded (they depend on an earlier answer)")
        position, key = recorded[k]
        if call_key(number, args, kwargs) != key:
            raise Failure("the call's arguments differ from the recorded ones (they depend on an earlier answer)")
        if position >= len(answers):
            raise Failure(f"no answer: the program ended after {len(answers)} of {total_calls} calls")
        return reply(answers[position], solution)
    return proxy


def _alarm(signum, frame):
    raise GroupTimeout()


def limited(seconds, fn, *args):
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        return fn(*args)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def recorded_calls():
    by_group = {}
    with open(CALLS_FILE, encoding="ascii") as fh:
        keys = fh.read().splitlines()
    for position, key in enumerate(keys):
        number = json.loads(key)[0]
        by_group.setdefault(number, []).append((position, key))
    return by_group, len(keys)


def replay(entry, tests, seed, solution):
    by_group, total_calls = recorded_calls()
    answers = sys.stdin.buffer.read().decode("utf-8", "replace").splitlines()[:total_calls]
    source, env, groups = load_tests(tests)
    lines, passed, first = source.splitlines(), 0, ""
    deadline = time.monotonic() + REPLAY_LIMIT_S
    for number, group in enumerate(groups):
        install(env, entry, replayer(number, by_group.get(number, []), answers, total_calls, solution))
        seed_group(seed, number)
        try:
            limited(min(GROUP_LIMIT_S, deadline - time.monotonic()), run_group, group, env)
            passed += 1
        except (Exception, Failure, GroupTimeout, SystemExit) as exc:
            if not first:
                first = f"FAILED test {number + 1} of {len(groups)}:\n" + describe(exc, group, env, lines)
    return {"passed": passed, "total": len(groups), "detail": first}


def main():
    out = private_stdout()
    mode, entry, tests = sys.argv[1], sys.argv[2], sys.argv[3]
    if mode == "record":
        result = record(entry, tests, sys.argv[4], int(sys.argv[5]))
    else:
        result = replay(entry, tests, int(sys.argv[4]), sys.argv[5])
    emit(out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
