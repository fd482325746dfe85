/* model_priv.h - helpers shared by the model/ sources only (not a contract
 * with other subsystems).
 *
 * defines: loom_model_resolve_context */
#ifndef LOOM_MODEL_PRIV_H
#define LOOM_MODEL_PRIV_H

#include "model/model.h"

/* *out = want, or the config's max_position_embeddings when want is 0;
 * LOOM_ERR_LIMIT when want is negative or above it. what names the model. */
loom_status loom_model_resolve_context(const char *what, const loom_config *cfg,
                                       int32_t want, int32_t *out);

#endif
