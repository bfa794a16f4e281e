// ktf/engine.h — everything a program that runs configs needs (link ktf::engine): config
// resolution, plugin loading, the cycle builder, the runner (ktf::Environment), evaluate,
// convert and view. Plugins never include it: they see the SDK alone (ktf/ktf.h).
#pragma once

#include "ktf/checkpoint.h"
#include "ktf/config.h"
#include "ktf/convert.h"
#include "ktf/cycle.h"
#include "ktf/environment.h"
#include "ktf/evaluate.h"
#include "ktf/ktf.h"
#include "ktf/plugin_loader.h"
#include "ktf/process.h"
#include "ktf/viewer.h"
