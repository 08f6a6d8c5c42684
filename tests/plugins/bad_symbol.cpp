// A shared library that is not a MechScope plugin (no entry points).
extern "C" __attribute__((visibility("default"))) int some_other_function() { return 42; }
