// SDK-internal: components wrapped so that an error thrown while they run names their config
// path ("cycle 1 › loss › my.losses.FocalLoss: ..."), the way errors while building them do.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "ktf/spec.h"

namespace ktf::detail {

/// `made` (a component of `kind` built at `path`) behind a forwarding wrapper that adds `path`
/// to its run-time errors. Networks, optimizers and datasets are returned as they are: a
/// network's errors are named by TrainContext::forward, a dataset's by its guarded streams.
std::shared_ptr<void> guard_component(Kind kind, std::shared_ptr<void> made,
                                      const std::vector<std::string>& path);

}  // namespace ktf::detail
