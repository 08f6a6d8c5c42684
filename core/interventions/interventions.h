// Causal interventions (spec §4), one header for all: readouts and metrics, the sweep engine, heads, head ablation,
// attention knockout, activation and attribution patching, direct logit attribution. Every sweep has a plain path
// (one forward per intervention, through the public hooks) and a batched path (prefix reuse, variants stacked along
// the batch, readout positions only) that must agree with it. Include the narrower header where one suffices.
#pragma once

#include "core/interventions/ablation.h"
#include "core/interventions/dla.h"
#include "core/interventions/heads.h"
#include "core/interventions/knockout.h"
#include "core/interventions/metrics.h"
#include "core/interventions/patching.h"
#include "core/interventions/sweep.h"
