// cuDNN's fused flash attention (through the header-only cuDNN frontend) for the bf16 training path: causal, GQA,
// the sliding window as the diagonal band's left bound, forward and backward. Its own shared library,
// libnanochat_cudnn.so, linked against cuDNN: libnanochat_cuda.so loads it at run time (context.cu) when it sits
// beside it and cuDNN loads, and otherwise trains with the WMMA kernels (attention_bf16.cu), which stay the
// reference. Compiled apart from the kernel families also because the frontend's headers compile slowly.
//
// Operands are bf16 in our layout: q, o, do [B, T, H, D], k, v [B, T, Hkv, D], read through strides (cuDNN's dims
// are [B, H, T, D]); the statistics (log-sum-exp of the scaled scores, natural log) are fp32 [B, H, T], the same
// quantity the WMMA forward saves. One graph per shape and window, built once and cached; a workspace grown once.
#include <cuda_runtime.h>
#include <cudnn.h>

#include <cudnn_frontend.h>
#include <memory>
#include <string>
#include <tuple>
#include <unordered_map>

#include "../nanochat_cudnn.h"

namespace fe = cudnn_frontend;

namespace {

enum Uid : int64_t { Q = 1, K, V, O, STATS, DO, DQ, DK, DV };

struct Key {
    int64_t B, T, H, Hkv, D, window;
    bool backward;
    bool operator==(const Key &o) const {
        return std::tie(B, T, H, Hkv, D, window, backward) == std::tie(o.B, o.T, o.H, o.Hkv, o.D, o.window, o.backward);
    }
};
struct KeyHash {
    size_t operator()(const Key &k) const {
        size_t h = 1469598103934665603ull;
        for (int64_t v : {k.B, k.T, k.H, k.Hkv, k.D, k.window, (int64_t)k.backward}) h = (h ^ (size_t)v) * 1099511628211ull;
        return h;
    }
};

}  // namespace

struct ncd_state {
    cudnnHandle_t handle = nullptr;
    std::unordered_map<Key, std::shared_ptr<fe::graph::Graph>, KeyHash> graphs;
    void *workspace = nullptr;
    int64_t workspace_bytes = 0;
    std::string error;
};

static int fail(ncd_state *s, const std::string &what) {
    s->error = what;
    return 1;
}

// dims [B, heads, T, D] over our [B, T, heads, D] buffer
static std::shared_ptr<fe::graph::Tensor_attributes> operand(fe::graph::Graph &g, const char *name, int64_t uid, int64_t B, int64_t T,
                                                             int64_t heads, int64_t D) {
    return g.tensor(fe::graph::Tensor_attributes().set_name(name).set_uid(uid).set_dim({B, heads, T, D})
                        .set_stride({T * heads * D, D, heads * D, 1}));
}

static void output(const std::shared_ptr<fe::graph::Tensor_attributes> &t, int64_t uid, int64_t B, int64_t T, int64_t heads, int64_t D) {
    t->set_output(true).set_uid(uid).set_dim({B, heads, T, D}).set_stride({T * heads * D, D, heads * D, 1});
}

// The graph for this shape: cached, or built (forward: O and the statistics; backward: dQ, dK, dV).
static int graph_for(ncd_state *s, const Key &key, std::shared_ptr<fe::graph::Graph> &out) {
    auto found = s->graphs.find(key);
    if (found != s->graphs.end()) { out = found->second; return 0; }
    auto g = std::make_shared<fe::graph::Graph>();
    g->set_io_data_type(fe::DataType_t::BFLOAT16)
        .set_intermediate_data_type(fe::DataType_t::FLOAT)
        .set_compute_data_type(fe::DataType_t::FLOAT);
    auto q = operand(*g, "Q", Q, key.B, key.T, key.H, key.D);
    auto k = operand(*g, "K", K, key.B, key.T, key.Hkv, key.D);
    auto v = operand(*g, "V", V, key.B, key.T, key.Hkv, key.D);
    float scale = 1.f / sqrtf((float)key.D);
    // upstream's window w lets query i see keys i - w .. i (w + 1 of them); cuDNN's left bound counts the diagonal
    bool windowed = key.window + 1 < key.T;
    if (!key.backward) {
        auto attrs = fe::graph::SDPA_attributes().set_name("attention").set_generate_stats(true).set_attn_scale(scale)
                         .set_diagonal_alignment(fe::DiagonalAlignment_t::TOP_LEFT).set_diagonal_band_right_bound(0);
        if (windowed) attrs.set_diagonal_band_left_bound((int)(key.window + 1));
        auto [o, stats] = g->sdpa(q, k, v, attrs);
        output(o, O, key.B, key.T, key.H, key.D);
        stats->set_output(true).set_uid(STATS).set_data_type(fe::DataType_t::FLOAT)
            .set_dim({key.B, key.H, key.T, 1}).set_stride({key.H * key.T, key.T, 1, 1});
    } else {
        auto o = operand(*g, "O", O, key.B, key.T, key.H, key.D);
        auto dout = operand(*g, "dO", DO, key.B, key.T, key.H, key.D);
        auto stats = g->tensor(fe::graph::Tensor_attributes().set_name("stats").set_uid(STATS).set_data_type(fe::DataType_t::FLOAT)
                                   .set_dim({key.B, key.H, key.T, 1}).set_stride({key.H * key.T, key.T, 1, 1}));
        auto attrs = fe::graph::SDPA_backward_attributes().set_name("attention_backward").set_attn_scale(scale)
                         .set_diagonal_alignment(fe::DiagonalAlignment_t::TOP_LEFT).set_diagonal_band_right_bound(0);
        if (windowed) attrs.set_diagonal_band_left_bound((int)(key.window + 1));
        auto [dq, dk, dv] = g->sdpa_backward(q, k, v, o, dout, stats, attrs);
        output(dq, DQ, key.B, key.T, key.H, key.D);
        output(dk, DK, key.B, key.T, key.Hkv, key.D);
        output(dv, DV, key.B, key.T, key.Hkv, key.D);
    }
    auto status = g->build(s->handle, {fe::HeurMode_t::A});
    if (status.is_bad()) return fail(s, "cuDNN attention graph: " + status.get_message());
    int64_t bytes = 0;
    auto sized = g->get_workspace_size(bytes);
    if (sized.is_bad()) return fail(s, "cuDNN attention workspace: " + sized.get_message());
    if (bytes > s->workspace_bytes) {  // grown once per larger shape (the first step), never shrunk
        if (s->workspace) cudaFree(s->workspace);
        s->workspace = nullptr;
        cudaError_t e = cudaMalloc(&s->workspace, (size_t)bytes);
        if (e != cudaSuccess) { s->workspace_bytes = 0; return fail(s, std::string("cuDNN attention workspace: ") + cudaGetErrorString(e)); }
        s->workspace_bytes = bytes;
    }
    s->graphs.emplace(key, g);
    out = g;
    return 0;
}

static int run(ncd_state *s, const Key &key, std::unordered_map<int64_t, void *> &pack) {
    std::shared_ptr<fe::graph::Graph> g;
    if (graph_for(s, key, g)) return 1;
    auto status = g->execute(s->handle, pack, s->workspace);
    if (status.is_bad()) return fail(s, "cuDNN attention: " + status.get_message());
    return 0;
}

extern "C" {

int ncd_create(ncd_state **out, void *stream) {
    *out = new ncd_state();
    cudnnStatus_t st = cudnnCreate(&(*out)->handle);
    if (st == CUDNN_STATUS_SUCCESS) st = cudnnSetStream((*out)->handle, (cudaStream_t)stream);
    if (st != CUDNN_STATUS_SUCCESS) return fail(*out, std::string("cudnnCreate: ") + cudnnGetErrorString(st));
    return 0;
}

void ncd_destroy(ncd_state *s) {
    if (!s) return;
    s->graphs.clear();
    if (s->workspace) cudaFree(s->workspace);
    if (s->handle) cudnnDestroy(s->handle);
    delete s;
}

const char *ncd_error(ncd_state *s) { return s ? s->error.c_str() : "no cuDNN state"; }

size_t ncd_version(void) { return cudnnGetVersion(); }

int ncd_attention_forward(ncd_state *s, void *o, float *lse, const void *q, const void *k, const void *v, int64_t B, int64_t T,
                          int64_t H, int64_t Hkv, int64_t D, int64_t window) {
    std::unordered_map<int64_t, void *> pack = {{Q, (void *)q}, {K, (void *)k}, {V, (void *)v}, {O, o}, {STATS, lse}};
    return run(s, Key{B, T, H, Hkv, D, window, false}, pack);
}

int ncd_attention_backward(ncd_state *s, void *dq, void *dk, void *dv, const void *q, const void *k, const void *v, const void *o,
                           const void *dout, const float *lse, int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t D,
                           int64_t window) {
    std::unordered_map<int64_t, void *> pack = {{Q, (void *)q}, {K, (void *)k}, {V, (void *)v}, {O, (void *)o}, {DO, (void *)dout},
                                                {STATS, (void *)lse}, {DQ, dq}, {DK, dk}, {DV, dv}};
    return run(s, Key{B, T, H, Hkv, D, window, true}, pack);
}

}  // extern "C"
