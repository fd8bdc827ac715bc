#include <cstdio>
void saxpy(int n, float a, const float *x, float *y);
int main() { std::puts("KISYSTEM_TESTS passed=0 total=1"); return 1; }
