// Self-registration of op bindings: each src/binding/*_binding.cpp file declares its exports with
// RLHF_BINDING_EXPORTS(name) { ... } and the module initialiser calls them all, so adding an op
// means adding a file, not editing a central list.
#pragma once

#include <napi.h>

namespace rlhf::binding {

using ExportsInit = void (*)(Napi::Env env, Napi::Object exports);

// Called from static initialisers; returns a dummy value so it can initialise a static.
int registerExports(const char* name, ExportsInit init);
// Runs every registered initialiser (in name order, so the module layout is deterministic).
void initRegisteredExports(Napi::Env env, Napi::Object exports);

}  // namespace rlhf::binding

#define RLHF_BINDING_EXPORTS(name)                                                              \
  static void rlhfExports_##name(Napi::Env env, Napi::Object exports);                          \
  [[maybe_unused]] static const int rlhfRegistered_##name =                                     \
      ::rlhf::binding::registerExports(#name, rlhfExports_##name);                              \
  static void rlhfExports_##name(Napi::Env env, Napi::Object exports)
