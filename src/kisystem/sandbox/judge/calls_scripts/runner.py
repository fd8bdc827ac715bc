"""The candidate's side of the calls judge: run in the candidate's workspace, sandboxed.

    python -I kisystem_runner.py SOLUTION_FILE ENTRY_POINT < calls

Reads one recorded call per line on stdin (the codec's [group, args, kwargs]),
calls ENTRY_POINT of SOLUTION_FILE with each, and writes one answer line per call to
the original stdout: {"v": value}, {"e": [type, message, line]} (it raised),
{"t": seconds} (it timed out) or {"load": message} (the solution did not load).  The
solution's own prints go to stderr.  Nothing here is trusted: the judge checks every
answer against the task's tests in a process of its own.
"""

import importlib.util
import json
import os
import signal
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # -I leaves the script's directory out
import kisystem_codec as codec  # noqa: E402

CALL_LIMIT_S = 3.0
SHOW = 300


class CallTimeout(BaseException):
    """BaseException, so that a solution's `except Exception` cannot swallow it."""


def _alarm(signum, frame):
    raise CallTimeout()


def limited(fn, *args, **kwargs):
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, CALL_LIMIT_S)
    try:
        return fn(*args, **kwargs)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def private_stdout():
    """A private fd for the answers; fd 1 and sys.stdout then go to stderr."""
    answers = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return answers


def write_line(fd, text):
    data = (text + "\n").encode("ascii")
    while data:
        data = data[os.write(fd, data):]


def load(solution, entry):
    path = os.path.join(os.getcwd(), solution)
    spec = importlib.util.spec_from_file_location("solution", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["solution"] = module
    limited(spec.loader.exec_module, module)
    function = getattr(module, entry, None)
    if not callable(function):
        raise AttributeError(f"{solution} defines no function {entry}()")
    return function


def raised(exc, solution):
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.endswith(solution)]
    line = frames[-1].lineno if frames else None
    return {"e": [type(exc).__name__, str(exc)[:SHOW], line]}


def answer(function, call, solution):
    try:
        _, args, kwargs = codec.loads(call)
        value = limited(function, *args, **kwargs)
        return '{"v":' + codec.dumps(value) + "}"
    except CallTimeout:
        return json.dumps({"t": f"{CALL_LIMIT_S:g} s"})
    except BaseException as exc:  # noqa: BLE001 - SystemExit too: it is the solution's answer
        return json.dumps(raised(exc, solution))


def main():
    solution, entry = sys.argv[1], sys.argv[2]
    calls = sys.stdin.buffer.read().decode().splitlines()
    out = private_stdout()
    try:
        function = load(solution, entry)
    except BaseException as exc:  # noqa: BLE001 - any failure to load is the solution's
        detail = f"cannot load {entry} from {solution}: {type(exc).__name__}: {str(exc)[:SHOW]}"
        print(detail, file=sys.stderr)
        for _ in calls:
            write_line(out, json.dumps({"load": detail}))
        return 1
    for call in calls:
        write_line(out, answer(function, call, solution))
    return 0


if __name__ == "__main__":
    sys.exit(main())
