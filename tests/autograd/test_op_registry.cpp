// Walks autograd's op registry: every registered op must have a backward and pass the finite-difference
// check here; a registered op without a case fails (so an op cannot ship without a checked gradient).
// Also composite cases for the tape's fan-out rule (one tensor feeding two ops, and x + x).
#include <map>

#include "autograd/op_registry.h"
#include "autograd/ops/add.h"
#include "autograd/ops/bias_add.h"
#include "autograd/ops/concat.h"
#include "autograd/ops/conv3d.h"
#include "autograd/ops/conv_transpose3d.h"
#include "autograd/ops/dice_ce.h"
#include "autograd/ops/instance_norm.h"
#include "autograd/ops/leaky_relu.h"
#include "tests/autograd/fd_check.h"

using namespace dex;
using namespace dex::testing;

namespace {

Tensor weight(std::initializer_list<int64_t> s) { return Tensor(s, Layout::Weight); }

// Target for the dice_ce case: fixed, both classes present in each sample.
const uint8_t kTarget[2 * 12] = {0, 1, 1, 0, 1, 0, 0, 0, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1, 1, 0, 0, 0};

std::map<std::string, std::vector<FdCase>> op_cases() {
  std::map<std::string, std::vector<FdCase>> m;
  static const int s1[3] = {1, 1, 1}, s2[3] = {2, 2, 1}, p1[3] = {1, 1, 1}, p0[3] = {0, 0, 0};
  m["conv3d"] = {
      {"conv3d k3 s1 p1", {{ndhwc(2, 3, 2, 3, 3)}, {weight({2, 3, 3, 3, 3})}},
       [](Tape& t, const std::vector<Tensor>& x) { return conv3d(t, x[0], x[1], s1, p1); }},
      {"conv3d k3 s(2,2,1) p1", {{ndhwc(1, 4, 4, 3, 2)}, {weight({3, 3, 3, 3, 2})}},
       [](Tape& t, const std::vector<Tensor>& x) { return conv3d(t, x[0], x[1], s2, p1); }},
      {"conv3d k1 s(2,2,1) p0", {{ndhwc(1, 4, 2, 3, 3)}, {weight({2, 1, 1, 1, 3})}},
       [](Tape& t, const std::vector<Tensor>& x) { return conv3d(t, x[0], x[1], s2, p0); }},
  };
  m["conv_transpose3d"] = {
      {"convT k2 s2", {{ndhwc(2, 2, 1, 2, 3)}, {weight({2, 2, 2, 2, 3})}},
       [](Tape& t, const std::vector<Tensor>& x) {
         static const int s[3] = {2, 2, 2};
         return conv_transpose3d(t, x[0], x[1], s, p0);
       }},
      {"convT k(2,2,1) s(2,2,1)", {{ndhwc(1, 2, 2, 3, 2)}, {weight({3, 2, 2, 1, 2})}},
       [](Tape& t, const std::vector<Tensor>& x) { return conv_transpose3d(t, x[0], x[1], s2, p0); }},
  };
  m["instance_norm"] = {
      {"instance_norm", {{ndhwc(2, 2, 3, 2, 3)}},
       [](Tape& t, const std::vector<Tensor>& x) { return instance_norm(t, x[0], 1e-5f); }},
      {"instance_norm affine", {{ndhwc(1, 2, 2, 3, 2)}, {weight({2}), 0.5f, 1.5f}, {weight({2})}},
       [](Tape& t, const std::vector<Tensor>& x) { return instance_norm(t, x[0], 1e-5f, x[1], x[2]); }},
  };
  m["leaky_relu"] = {
      {"leaky_relu", {{ndhwc(1, 2, 3, 2, 2), -1.f, 1.f, 0.1f}},
       [](Tape& t, const std::vector<Tensor>& x) { return leaky_relu(t, x[0], 0.01f); }},
      {"leaky_relu in place over instance_norm + add", {{ndhwc(1, 2, 3, 2, 2)}, {ndhwc(1, 2, 3, 2, 2)}},
       [](Tape& t, const std::vector<Tensor>& x) {
         // the in-place ops only ever overwrite temporaries (never the leaves)
         Tensor h = leaky_relu(t, instance_norm(t, add(t, x[0], x[1]), 1e-5f, Tensor(), Tensor(), true), 0.01f, true);
         return leaky_relu(t, add(t, h, x[1], true), 0.01f, true);
       },
       2e-3},  // the nearest pre-activation to the final kink is 0.028: keep 2h * |ds/dx| below it
  };
  m["add"] = {
      {"add", {{ndhwc(1, 2, 2, 2, 3)}, {ndhwc(1, 2, 2, 2, 3)}},
       [](Tape& t, const std::vector<Tensor>& x) { return add(t, x[0], x[1]); }},
      {"add x+x (fan-out into one op)", {{ndhwc(1, 2, 2, 1, 3)}},
       [](Tape& t, const std::vector<Tensor>& x) { return add(t, x[0], x[0]); }},
  };
  m["concat"] = {{"concat", {{ndhwc(2, 2, 1, 2, 2)}, {ndhwc(2, 2, 1, 2, 3)}},
                  [](Tape& t, const std::vector<Tensor>& x) { return concat(t, x[0], x[1]); }}};
  m["bias_add"] = {{"bias_add", {{ndhwc(2, 2, 2, 1, 3)}, {weight({3})}},
                    [](Tape& t, const std::vector<Tensor>& x) { return bias_add(t, x[0], x[1]); }}};
  m["dice_ce"] = {{"dice_ce", {{ndhwc(2, 2, 3, 2, 2), -2.f, 2.f}},
                   [](Tape& t, const std::vector<Tensor>& x) { return dice_ce(t, x[0], kTarget); }}};
  return m;
}

}  // namespace

TEST(OpRegistry, EveryOpHasABackwardAndPassesFiniteDifferences) {
  const auto cases = op_cases();
  ASSERT_FALSE(registered_ops().empty());
  for (const OpInfo& op : registered_ops()) {
    SCOPED_TRACE(op.name);
    EXPECT_TRUE(op.has_backward) << op.name << " is registered without a backward";
    auto it = cases.find(op.name);
    ASSERT_NE(it, cases.end()) << "registered op '" << op.name << "' has no finite-difference case";
    for (const FdCase& c : it->second) {
      FdReport r = run_fd_check(c, 7);
      EXPECT_TRUE(r.ok) << r.message;
      std::cout << r.message;
    }
  }
  for (const auto& kv : cases) {
    bool registered = false;
    for (const OpInfo& op : registered_ops()) registered |= op.name == kv.first;
    EXPECT_TRUE(registered) << "case for an op that is not registered: " << kv.first;
  }
}

// Fan-out through the tape: x feeds a conv and (through instance norm) a residual add, and a concat with
// itself; w feeds two convs. Each gradient must be the sum over its uses.
TEST(OpRegistry, CompositeFanOutPassesFiniteDifferences) {
  static const int s1[3] = {1, 1, 1}, p1[3] = {1, 1, 1}, p0[3] = {0, 0, 0};
  FdCase c{"residual + concat fan-out",
           {{ndhwc(1, 2, 3, 2, 2)}, {weight({2, 3, 3, 3, 2})}, {weight({2, 1, 1, 1, 2})}},
           [](Tape& t, const std::vector<Tensor>& x) {
             Tensor h = leaky_relu(t, instance_norm(t, conv3d(t, x[0], x[1], s1, p1)), 0.01f);
             Tensor r = instance_norm(t, conv3d(t, x[0], x[2], s1, p0));
             Tensor s = add(t, h, r);
             Tensor again = conv3d(t, s, x[1], s1, p1);  // x[1] used twice
             return concat(t, concat(t, again, x[0]), s);
           }};
  FdReport r = run_fd_check(c, 11);
  EXPECT_TRUE(r.ok) << r.message;
  std::cout << r.message;
}
