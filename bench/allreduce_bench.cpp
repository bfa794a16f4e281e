// ktf-bench-allreduce: how long one all-reduce (sum) of a float32 buffer takes between the ranks of
// a job, for a range of sizes, over ktf's c10d Gloo group (ktf::Communicator), the collective that
// averages gradients. Every rank runs it with the usual RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT;
// rank 0 prints one JSON line per size: {"bytes", "seconds" (median of the repeats), "repeats"}.
//   RANK=0 WORLD_SIZE=2 MASTER_ADDR=10.0.0.1 MASTER_PORT=29600 ktf-bench-allreduce 4096 1048576
#include <ktf/distributed.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <vector>

int main(int argc, char** argv) {
  try {
    const ktf::WorldInfo world = ktf::world_from_environment();
    if (!world.distributed()) {
      std::cerr << "ktf-bench-allreduce: set RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT\n";
      return 2;
    }
    ktf::Communicator comm(world, std::chrono::seconds(120));
    std::vector<int64_t> sizes;
    for (int i = 1; i < argc; ++i) sizes.push_back(std::stoll(argv[i]));
    if (sizes.empty()) sizes = {4 << 10, 64 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20};
    for (int64_t bytes : sizes) {
      std::vector<torch::Tensor> buffer{torch::ones({std::max<int64_t>(1, bytes / 4)})};
      comm.all_reduce_sum(buffer);  // warm-up: connections, allocations
      // About 2 s of repeats per size (at least 3, at most 200).
      const auto t0 = std::chrono::steady_clock::now();
      comm.all_reduce_sum(buffer);
      double first = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::vector<torch::Tensor> agreed{torch::tensor({first})};
      comm.broadcast(agreed);
      const int repeats = std::clamp(static_cast<int>(2.0 / agreed[0].item<double>()), 3, 200);
      std::vector<double> seconds;
      for (int r = 0; r < repeats; ++r) {
        comm.barrier();
        const auto start = std::chrono::steady_clock::now();
        comm.all_reduce_sum(buffer);
        seconds.push_back(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      }
      std::sort(seconds.begin(), seconds.end());
      if (world.rank == 0)
        std::cout << "{\"bytes\": " << bytes << ", \"seconds\": " << seconds[seconds.size() / 2]
                  << ", \"repeats\": " << repeats << "}" << std::endl;
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "ktf-bench-allreduce: " << e.what() << "\n";
    return 1;
  }
}
