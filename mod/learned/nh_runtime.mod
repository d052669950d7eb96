: hoc/Python access to the neuron-hybrid bridge (model loading), for hoc-only users.
:   id = nh_load("kdr.pt")            loads a learned current exported by neuron_hybrid.export
:   id = nh_load("kdr.pt", "table")   forces an engine: "auto", "torchscript", "compiled", "table"
:   nh_n_latent(id), nh_set_raise(id, 1) (stop instead of clamping outside the trained range)
NEURON {
    SUFFIX nothing
    THREADSAFE
}

VERBATIM
extern "C" int nhb_load(const char*, const char*, int);
extern "C" const char* nhb_last_error(void);
extern "C" int nhb_n_latent(int);
extern "C" int nhb_set_raise(int, int);
ENDVERBATIM

FUNCTION nh_load() {
VERBATIM
    const char* nh_engine_name = "auto";
    if (ifarg(2)) { nh_engine_name = hoc_gargstr(2); }
    int nh_h = nhb_load(hoc_gargstr(1), nh_engine_name, 0);
    if (nh_h < 0) { hoc_execerror(nhb_last_error(), 0); }
    _lnh_load = nh_h;
ENDVERBATIM
}

FUNCTION nh_n_latent(handle) {
VERBATIM
    _lnh_n_latent = nhb_n_latent((int) _lhandle);
ENDVERBATIM
}

FUNCTION nh_set_raise(handle, flag) {
VERBATIM
    if (nhb_set_raise((int) _lhandle, (int) _lflag)) { hoc_execerror(nhb_last_error(), 0); }
    _lnh_set_raise = 0;
ENDVERBATIM
}
