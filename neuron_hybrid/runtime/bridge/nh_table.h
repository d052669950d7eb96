/* neuron-hybrid: the rates-table view shared by the bridge and the learned-current MOD files.
 *
 * The MOD files include this inside nocmodl's output, where v, i, g, t, dt, exp and pow are macros:
 * every identifier here carries an nh prefix. Units: mV, ms.
 */
#ifndef NH_TABLE_H
#define NH_TABLE_H

#include <stddef.h>

/* Read-only view of a model's rates table: n rows at v = v_min + j / inv_h mV (j = 0..n-1, the last
 * at v_max), row j holding z_inf[K] then tau[K] (ms). */
typedef struct { const double* data; double v_min, v_max, inv_h; int n, K; } nhb_table_t;

/* z_inf[k] and tau[k] (k < K) at nh_vm (mV, within [v_min, v_max]) by linear interpolation. */
static inline void nhb_table_interp(const nhb_table_t* nh_t, double nh_vm, double* nh_zinf, double* nh_tau) {
    const int nh_K = nh_t->K;
    const double nh_x = (nh_vm - nh_t->v_min) * nh_t->inv_h;
    int nh_j = (int)nh_x;
    if (nh_j < 0) nh_j = 0;
    if (nh_j > nh_t->n - 2) nh_j = nh_t->n - 2;
    const double nh_f = nh_x - nh_j;
    const double* nh_a = nh_t->data + (size_t)nh_j * 2 * nh_K;
    const double* nh_b = nh_a + 2 * nh_K;
    for (int nh_k = 0; nh_k < nh_K; ++nh_k) {
        nh_zinf[nh_k] = nh_a[nh_k] + nh_f * (nh_b[nh_k] - nh_a[nh_k]);
        nh_tau[nh_k] = nh_a[nh_K + nh_k] + nh_f * (nh_b[nh_K + nh_k] - nh_a[nh_K + nh_k]);
    }
}

#endif
