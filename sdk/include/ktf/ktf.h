// ktf/ktf.h — everything a plugin needs: the SDK (link ktf::sdk). Programs that run configs
// themselves also include ktf/engine.h (link ktf::engine).
#pragma once

#include "ktf/components.h"
#include "ktf/data.h"
#include "ktf/error.h"
#include "ktf/json.h"
#include "ktf/network.h"
#include "ktf/plugin.h"
#include "ktf/registry.h"
#include "ktf/spec.h"
#include "ktf/train.h"
