// ktf/ktf.h — everything a plugin or an embedding program needs.
#pragma once

#include "ktf/components.h"
#include "ktf/config.h"
#include "ktf/environment.h"
#include "ktf/error.h"
#include "ktf/json.h"
#include "ktf/plugin.h"
#include "ktf/registry.h"
#include "ktf/spec.h"
#include "ktf/train.h"
