// ktf/memory.h — how much memory this process may still use, for readers that want to refuse an
// input too large for the machine with a message instead of being killed by the kernel.
//
//   ktf::check_memory(header_rows * row_bytes, "IDX file '" + path + "'");
//
// The host also checks every tensor of 64 MiB or more when it is allocated (docs/errors.md).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace ktf {

/// Bytes available to this process: MemAvailable of /proc/meminfo, lowered to what the cgroup's
/// memory limit leaves (v2 memory.max - memory.current, or v1's limit - usage); nullopt when
/// /proc/meminfo cannot be read.
std::optional<uint64_t> available_memory();

/// "512 bytes", "3.0 GiB", "1.5 TiB".
std::string size_text(uint64_t bytes);

/// Throws ktf::Error (exit 2) "<what> needs <size>, more than the <size> of memory this machine
/// has available" when `bytes` exceed available_memory().
void check_memory(uint64_t bytes, const std::string& what);

}  // namespace ktf
