// libnanochat_cudnn.so (cuda/cudnn/attention_cudnn.cu): cuDNN's fused flash attention, loaded at run time by
// libnanochat_cuda.so (context.cu) when it sits beside it and cuDNN loads. bf16 operands in our layout (q, o, do
// [B, T, H, D]; k, v [B, T, Hkv, D]), fp32 statistics [B, H, T]; query i sees keys i - window .. i. Every call
// returns 0, or 1 with ncd_error saying why.
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ncd_state ncd_state;

int ncd_create(ncd_state **state, void *stream);  // the cuDNN handle on our stream
void ncd_destroy(ncd_state *state);
const char *ncd_error(ncd_state *state);
size_t ncd_version(void);  // cuDNN's, e.g. 91400
int ncd_attention_forward(ncd_state *state, void *o, float *lse, const void *q, const void *k, const void *v, int64_t B,
                          int64_t T, int64_t H, int64_t Hkv, int64_t D, int64_t window);
// writes dq, dk, dv (bf16, not accumulated)
int ncd_attention_backward(ncd_state *state, void *dq, void *dk, void *dv, const void *q, const void *k, const void *v,
                           const void *o, const void *dout, const float *lse, int64_t B, int64_t T, int64_t H, int64_t Hkv,
                           int64_t D, int64_t window);

#ifdef __cplusplus
}
#endif
