/* neuron-hybrid bridge: a plain C API between NMODL mechanisms (or ctypes) and learned currents.
 *
 * A learned current is a TorchScript file written by `neuron_hybrid.export` (contract in README).
 * Units: v in mV, tau in ms, density current in mA/cm2 (conductance in S/cm2), point current in nA
 * (conductance in uS). All functions are thread safe. Functions returning int give 0 on success and
 * non-zero on error, with the message available from nhb_last_error() on the calling thread.
 */
#ifndef NH_BRIDGE_H
#define NH_BRIDGE_H

#include "nh_table.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NH_KMAX 8 /* latents per mechanism instance supported by the generated MOD files */

/* Load a model; engine is "auto", "torchscript", "compiled" or "table". Returns a handle >= 0, or -1. */
int nhb_load(const char* path, const char* engine, int raise_out_of_range);
const char* nhb_last_error(void);

int nhb_n_latent(int handle);
int nhb_kind(int handle); /* 0: density (mA/cm2), 1: point (nA) */
double nhb_v_min(int handle);
double nhb_v_max(int handle);
/* Engine actually used, e.g. "rates=table,current=compiled". Returns NULL for a bad handle. */
const char* nhb_engine(int handle);
/* Max error of the chosen fast engine against the TorchScript reference, measured at load:
 * which = 0: z_inf (absolute), 1: tau (relative), 2: current (relative to the largest |i| seen),
 * 3: conductance (relative to the largest |g| seen). -1 for a bad handle. */
double nhb_engine_error(int handle, int which);
int nhb_set_raise(int handle, int raise_out_of_range);
int nhb_set_instance_name(int handle, int instance, const char* name);
long nhb_out_of_range_count(int handle);

/* Evaluate at one voltage (one mechanism instance). zinf and tau receive NH_KMAX values; latents
 * beyond n_latent get zinf 0 and tau 1e300 ms (inert). instance is only used in error messages (-1: unknown). */
int nhb_rates(int handle, int instance, double v, double* zinf, double* tau);
/* The same, writing n_out >= n_latent values (latents beyond n_latent: zinf 0, tau 1e300 ms, inert);
 * an error if n_out < n_latent. The MOD files call it with the size of their mechanism family. */
int nhb_rates_n(int handle, int instance, double v, double* zinf, double* tau, int n_out);
/* The rates table (nh_table.h) of a model whose rates engine is "table", for mechanisms that
 * interpolate it inline in range (the MOD files do); every entry is finite and every tau > 0
 * (checked when loaded). NULL otherwise: then call nhb_rates_n. */
const nhb_table_t* nhb_table(int handle);
/* z holds n_latent values; writes the current and di/dv. */
int nhb_current(int handle, int instance, double v, const double* z, double* i, double* g);

/* Batched evaluation for tests and tools (same engines as above). n voltages; z is [n, n_latent]. */
int nhb_rates_batch(int handle, int n, const double* v, double* zinf, double* tau);
int nhb_current_batch(int handle, int n, const double* v, const double* z, double* i, double* g);

#ifdef __cplusplus
}
#endif
#endif
