#ifndef BIQUAD_TASK_H
#define BIQUAD_TASK_H
/* A cascade of biquad sections in transposed direct form II over one buffer.
 * coeffs holds 5 floats per section: b0, b1, b2, a1, a2 (a0 is 1).  state holds 2 floats
 * per section (z1, z2); it is read at the start and must hold the final state on return,
 * so consecutive buffers continue seamlessly.  Per sample and section:
 *     out = b0*in + z1;  z1 = b1*in - a1*out + z2;  z2 = b2*in - a2*out;
 * and each section's out is the next section's in.  y may equal x (in place). */
void biquad_cascade(const float *coeffs, int sections, float *state, const float *x, float *y, long n);
#endif
