// Helpers shared by the learning-rate schedules.
#include "optimizers.h"

namespace ktf::optimizers {

int64_t schedule_length(const std::optional<int64_t>& total_steps,
                        const std::optional<int64_t>& epochs,
                        const std::optional<int64_t>& steps_per_epoch,
                        int64_t dataset_steps_per_epoch) {
  if (total_steps) {
    KTF_CHECK(!epochs && !steps_per_epoch,
              "give either total_steps or epochs and steps_per_epoch, not both");
    KTF_CHECK(*total_steps > 0, "total_steps must be > 0, got ", *total_steps);
    return *total_steps;
  }
  KTF_CHECK(epochs && (steps_per_epoch || dataset_steps_per_epoch > 0),
            "give total_steps, or epochs (and steps_per_epoch where the dataset's batches per "
            "epoch are not known) for the schedule's length in optimizer steps");
  KTF_CHECK(*epochs > 0, "epochs must be > 0, got ", *epochs);
  const int64_t per_epoch = steps_per_epoch.value_or(dataset_steps_per_epoch);
  KTF_CHECK(per_epoch > 0, "steps_per_epoch must be > 0, got ", per_epoch);
  return *epochs * per_epoch;
}

}  // namespace ktf::optimizers
