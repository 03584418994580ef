/* method_trmml.h — TRM-ML (SPEC §4) as a training method (trmml/method.h): the CARL head
 * (trmml/carl.h), its losses (trmml/trmml_loss.h), MMCP (trmml/mmcp.h) and the two stages. */
#pragma once
#include "trmml/carl.h"
#include "trmml/mmcp.h"
#include "trmml/train.h"

/* TRM-ML's head state (TrmmlModel.head). */
typedef struct {
    TrmmlCarl carl;
    TrmmlMmcp mmcp;     /* bank, prototypes, thresholds (checkpointed as "mmcp.*") */
    float *query_text;  /* (C, d) CLIP text features of the query template (DECISION 9) */
    Tensor *regions;    /* this step's R (b,C,HW) and head input F (b,HW,d) of this rank's rows */
    Tensor *f;          /* after the optimizer step (DECISION 27); arena tensors of the step */
} MethodTrmmlState;

/* TRM-ML's own keys of a TRM-ML run's configuration, in RunConfig.mc (CHECK that it is one;
 * writable through a const configuration, as strchr). */
MethodTrmmlConfig *method_trmml_config(const RunConfig *rc);
/* Their SPEC values (COCO/RN101 recipe). */
MethodTrmmlConfig method_trmml_config_default(void);
/* The state of a TRM-ML model (CHECK that m is one). */
MethodTrmmlState *method_trmml_state(const TrmmlModel *m);
/* The dense features CARL reads, from the cached/tower output (B, HW+1, E): with drop_token0
 * the spatial tokens (B, HW, E) (a copy, DECISION 7), otherwise dense itself. */
Tensor *method_trmml_head_input(const TrmmlModel *m, Tensor *dense);
