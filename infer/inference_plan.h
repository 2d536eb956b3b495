// InferencePlan (issue 8): the DynUNet forward compiled once for one input size into a flat schedule of steps
// over numbered buffers. No tape, no per-call allocation: every buffer has a fixed offset in one arena, chosen
// at build time from the buffers' lifetimes (a buffer's bytes are reused once it is dead), and the weights are
// packed once in the layout the executor wants.
//
// The schedule records the fusions of KERNELS.md §5, whatever executor runs it:
//   - Conv steps say which stats slot their epilogue fills with the instance-norm statistics of their output.
//   - A consumer reads a raw conv output through an operand with `norm` set: normalise (+ LeakyReLU) is its
//     prologue. Such a raw buffer has exactly one consumer (checked at build).
//   - The decoder's conv1 reads two buffers, the transposed-conv output first and the skip second: the concat
//     is never copied (its weights' channel order, KTRSC with C = C_up + C_skip, already matches).
//   - A residual block's 1x1 projection (conv3) rides on conv1's step: one read of the shared input.
//   - Residual steps materialise lrelu(norm2(h) + norm3(r)) in place of h (it feeds the next block and a skip).
//   - The head normalises + LeakyReLU's its input, applies the 1x1 conv + bias, then softmax and argmax.
//
// Memory of the bundle's network at 1x3x128^3 (build_plan_schedule; dex-plan-bench prints it): activations f32
// 768 MiB = 3 x 256 MiB, the lower bound (input_block's conv1, projection and conv2 outputs; upsamples.4's
// transposed conv, skip and conv1 outputs), 2102 MiB without reuse; f16 384 MiB. With the packed weights (118 / 59
// MiB), stats (40 KiB) and workspace: 938 MiB f32 on the CPU, 479 MiB f16 on CUDA (workspace 36 MiB: the f32 input
// staging and the fused kernels' tile partials). The tape's arena peaks at 3.03 GiB.
//
// The CPU executor (fp32, the CPU backend table) runs each prologue as a separate in-place instance_norm_fwd
// (+ leaky_relu) pass right before the consumer, which also produces the epilogue's statistics: those are the
// exact kernels, in the exact order, that the tape forward uses, so its logits equal DynUNet::forward's bit for
// bit. The CUDA executor (f32) runs the same schedule with the CUDA table's kernels, unfused, captured as one CUDA
// graph. The CUDA f16 executor applies the recorded fusions inside its kernels (infer/plan_conv_fused.h: statistics
// of the stored fp16 values in the producing conv's epilogue, normalise + LeakyReLU in the consumer's prologue,
// two-operand concat-free conv1, the projection on conv1's centre-tap k-steps, residual add elementwise, the head in
// one pass); PlanOptions::fused = false (or DEX_PLAN_UNFUSED=1) runs the unfused f16 kernels instead.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/arena.h"
#include "kernels/backend.h"
#include "kernels/conv3d.h"
#include "kernels/conv_transpose3d.h"
#include "layers/dynunet.h"

namespace dex {

namespace plan_fused {
struct Operand;  // infer/plan_conv_fused.h
}

struct PlanOptions {
  Device device = Device::CPU;
  DType precision = DType::F32;  // activations and conv weights: F32, or F16 (fp32 statistics and logits)
  int batch = 1;
  bool keep_input = false;  // the input buffer stays intact after run() (a click path rewriting only heatmaps)
  // CUDA f16: the fused kernels (infer/plan_conv_fused.h: norm prologue, statistics epilogue, concat-free operands,
  // the projection on conv1's read, one-pass head). false, or DEX_PLAN_UNFUSED=1 in the environment when the plan is
  // built: the unfused f16 kernels (separate statistics, normalise and add passes), for comparison.
  bool fused = true;
};

enum class PlanStepKind : uint8_t { Conv, ConvTranspose, Residual, Head };
const char* plan_step_kind_name(PlanStepKind k);

// How a step reads one of its input buffers.
struct PlanOperand {
  int buffer = -1;
  int channels = 0;
  int norm = -1;       // stats slot to normalise with while loading (prologue); -1: read as stored
  bool lrelu = false;  // LeakyReLU after the normalisation (conv consumers: yes; residual operands: no)
};

struct PlanStep {
  PlanStepKind kind = PlanStepKind::Conv;
  std::string name;        // MONAI module path of the (first) layer, e.g. "upsamples.4.conv_block.conv1"
  PlanOperand in[2];       // in[1]: the decoder conv1's skip (concat-free) or a residual's second term
  int num_in = 1;
  int out = -1;            // output buffer (Residual: in[0].buffer, written in place)
  int out_stats = -1;      // Conv: stats slot its epilogue accumulates for `out`; -1: none
  Conv3dParams conv;       // Conv, Head (C = the operands' channels together)
  ConvTranspose3dParams tconv;
  int weight = -1;         // packed weight index
  int bias = -1;           // Head: packed bias index
  // Conv only: the residual 1x1 projection sharing this step's input read (-1: none)
  int proj_out = -1, proj_stats = -1, proj_weight = -1;
  Conv3dParams proj;
  bool lrelu_out = false;  // Residual: LeakyReLU after the add
  // Head: softmax probabilities (fp32) and argmax mask (uint8); `out` holds the logits (fp32).
  int probs = -1, mask = -1;
  double macs() const;
};

struct PlanBuffer {
  std::string name;        // the value it is created for
  int64_t voxels = 0;      // N*D*H*W
  int channels = 0;
  DType dtype = DType::F32;
  size_t bytes = 0;
  size_t offset = 0;       // in the activation arena (256-byte aligned)
  int first = 0, last = 0; // steps that write it first / read it last (inclusive); inputs start at 0,
                           // outputs live to the end
};

// Instance-norm statistics of one conv output: mean and rstd per (sample, channel), fp32.
struct PlanStats {
  std::string name;        // the norm's module path, e.g. "bottleneck.norm2"
  int channels = 0;
  float eps = 1e-5f;
  int gamma = -1, beta = -1;  // packed affine weights (BlockOptions::norm_affine), else -1
};

struct PlanWeight {
  std::string name;        // state_dict name
  int64_t elems = 0;
  size_t offset = 0;       // bytes into the packed weight buffer (256-byte aligned)
  DType dtype = DType::F32;
};

struct PlanMemory {
  size_t activations = 0;              // the arena: peak of the static offset assignment
  size_t activations_lower_bound = 0;  // max over steps of the bytes live at that step (no assignment beats it)
  size_t activations_no_reuse = 0;     // every buffer its own bytes (what a bump arena without reuse holds)
  size_t stats = 0;                    // all stats slots
  size_t weights = 0;                  // packed weights
  size_t workspace = 0;                // executor scratch: CPU im2col panels; CUDA f16 the f32 input staging
  size_t total() const { return activations + stats + weights + workspace; }
};

// The schedule alone: steps, buffers with offsets, stats slots, weight table, memory. No allocation, no
// weights: usable for any device/precision (e.g. to state the peak memory of a CUDA fp16 plan on a CPU box).
struct PlanSchedule {
  DynUNetConfig config;
  PlanOptions options;
  Int3 spatial{0, 0, 0};
  std::vector<PlanStep> steps;
  std::vector<PlanBuffer> buffers;
  std::vector<PlanStats> stats;
  std::vector<PlanWeight> weights;
  PlanMemory memory;
  int input = -1;          // the network input buffer [N][D][H][W][in_channels]
  int logits = -1, probs = -1, mask = -1;

  double macs() const;
  // Human-readable schedule: steps with operands, fusions and buffers, then the buffer table and memory.
  std::string describe() const;
};

// Throws InputError when the spatial size is not a multiple of the total stride or the options are invalid.
PlanSchedule build_plan_schedule(const DynUNetConfig& config, Int3 spatial, const PlanOptions& options = {});

class InferencePlan {
 public:
  // Builds the schedule, allocates the arena, stats and workspace on options.device, and packs the weights of
  // `net` (copied: later changes to net's parameters are not seen; build a new plan). Executors: CPU f32 (the
  // CPU backend table); where dex_cuda is built, CUDA f32 (the CUDA table + infer/plan_cuda.cu) and CUDA f16
  // (fp16 activations and conv weights: the fused kernels of infer/plan_conv_fused.h; unfused, PlanOptions::fused =
  // false or DEX_PLAN_UNFUSED=1: the CUDA f16 convs and the f16 pieces of infer/plan_cuda.cu), the whole forward
  // captured once as a CUDA graph and replayed. Throws when the device has no backend (saying why).
  InferencePlan(const DynUNet& net, Int3 spatial, const PlanOptions& options = {});
  ~InferencePlan();
  InferencePlan(const InferencePlan&) = delete;
  InferencePlan& operator=(const InferencePlan&) = delete;

  const PlanSchedule& schedule() const { return m_schedule; }
  const PlanMemory& memory() const { return m_schedule.memory; }

  // The input buffer on the plan's device: NDHWC [N][D][H][W][in_channels], fp32 (f16 plans: an f32 staging
  // buffer converted at the start of each run). Write it, then run(); in f32 plans its bytes are reused during
  // the run unless PlanOptions::keep_input.
  float* input();
  void run();
  // Copies x (host, N*D*H*W*in_channels floats) into the input buffer (on the plan's stream; returns when done).
  void upload(const float* x);
  // upload(x), then run().
  void run(const float* x);

  // Results of the last run, on the plan's device: logits and probabilities [N][D][H][W][out_channels],
  // mask [N][D][H][W]; the *_host() variants copy them to the host.
  const float* logits() const;
  const float* probabilities() const;
  const uint8_t* mask() const;
  std::vector<float> logits_host() const;
  std::vector<float> probabilities_host() const;
  std::vector<uint8_t> mask_host() const;
  int64_t output_voxels() const;

  // Fills the activation arena with a NaN pattern (tests: a step reading a buffer nobody wrote shows up).
  void poison_arena();

  // CUDA f16 plans: whether run() uses the fused kernels (PlanOptions::fused and DEX_PLAN_UNFUSED unset).
  bool fused() const { return m_fused; }
  // CUDA plans: graph replays timed with CUDA events, in ms, after `warmup` untimed replays (captures the graph on
  // first use). Runs on the plan's current input; results are those of the last replay. Throws on the CPU.
  std::vector<double> replay_times_ms(int warmup, int runs);

 private:
  float* fbuf(int id) const;
  void* vbuf(int id) const;
  bool f16() const;
  void run_steps();
  void run_conv(const PlanStep& s);
  void run_conv_transpose(const PlanStep& s);
  void run_residual(const PlanStep& s);
  void run_head(const PlanStep& s);
  void prologue(const PlanOperand& op);  // normalise (+ LeakyReLU) the raw buffer in place
  InstanceNormParams norm_params(const PlanOperand& op) const;  // the instance norm of a normed operand
  float* stats_mean(int slot) const;     // [N][C] of stats slot `slot`
  float* stats_rstd(int slot) const;
  plan_fused::Operand fused_operand(const PlanOperand& op) const;
  void capture();                        // CUDA: capture run_steps() once as the plan's graph
  const float* weight(int i) const;

  PlanSchedule m_schedule;
  const Backend* m_be = nullptr;
  Buffer m_arena, m_stats, m_weights, m_workspace;
  std::vector<size_t> m_stats_offset;  // floats into m_stats: mean then rstd, N*C each
  void* m_stream = nullptr;            // CUDA: the plan's stream
  void* m_graph = nullptr;             // CUDA: the captured forward (cudaGraphExec_t)
  bool m_fused = false;                // CUDA f16: the fused kernels run
};

}  // namespace dex
