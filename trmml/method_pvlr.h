/* method_pvlr.h — PVLR (SPEC §5) as a training method (trmml/method.h): what tests and tools
 * reach inside a PVLR run. */
#pragma once
#include "trmml/pvlr.h"
#include "trmml/train.h"

/* PVLR's own keys of a PVLR run's configuration, in RunConfig.mc (CHECK that it is one;
 * writable through a const configuration, as strchr). */
MethodPvlrConfig *method_pvlr_config(const RunConfig *rc);
/* The head of a PVLR model (CHECK that m is one). */
PvlrHead *method_pvlr_head(const TrmmlModel *m);
