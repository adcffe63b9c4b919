#include "registry.h"

#include <map>
#include <string>

namespace rlhf::binding {
namespace {

std::map<std::string, ExportsInit>& registry() {
  static std::map<std::string, ExportsInit> entries;  // function-local: safe during static init
  return entries;
}

}  // namespace

int registerExports(const char* name, ExportsInit init) {
  registry()[name] = init;
  return 0;
}

void initRegisteredExports(Napi::Env env, Napi::Object exports) {
  for (const auto& entry : registry()) entry.second(env, exports);
}

}  // namespace rlhf::binding
