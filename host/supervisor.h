// ktf-host --nproc-per-node N [--max-restarts K]: the built-in launcher of a data-parallel job on
// one machine, for users without Python's torchrun. It starts N ranks of ktf-host itself (its own
// command line without these options) with RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE,
// MASTER_ADDR=127.0.0.1 and a free MASTER_PORT; when one rank fails it sends the others SIGTERM
// and, after `grace_seconds`, SIGKILL; then it starts the job again up to K times (a failure with
// exit code 2 or 3, a bad command line, config or plugin, is not retried). SIGINT/SIGTERM to the
// launcher reach every rank (which checkpoint and stop). Its exit code is the first failed rank's.
#pragma once

namespace ktf::host {

/// `quiet` (-q): no line for the start of a job unless it may restart.
int supervise(int argc, char** argv, int nproc, int max_restarts, double grace_seconds, bool quiet);

}  // namespace ktf::host
