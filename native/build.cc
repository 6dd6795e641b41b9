// buildModule(): a TorchScript module from method source + tensors, saved to disk. This is how
// dfdet makes detector files from published weights (and how tests make small real models).
#include "build.h"

#include "tensors.h"

#include <sys/stat.h>

#include <cstdio>
#include <map>
#include <vector>

namespace dfdet {

namespace {

struct AttributeSpec {
  c10::TypePtr type;
  c10::IValue value;
};

struct ModuleSpec {
  std::string className;
  std::string source;
  std::vector<std::pair<std::string, PinnedTensor>> parameters;
  std::vector<std::pair<std::string, PinnedTensor>> buffers;
  std::vector<std::pair<std::string, AttributeSpec>> attributes;
  std::vector<std::pair<std::string, std::unique_ptr<ModuleSpec>>> submodules;
};

[[noreturn]] void bad(Napi::Env env, const std::string& msg) { throwTyped(env, ErrorCode::BAD_INPUT, msg); }

bool validIdentifier(const std::string& s) {
  if (s.empty() || !(std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_')) return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
  return true;
}

std::vector<std::pair<std::string, PinnedTensor>> readTensors(Napi::Env env, const Napi::Value& v, const std::string& what) {
  std::vector<std::pair<std::string, PinnedTensor>> out;
  if (v.IsUndefined() || v.IsNull()) return out;
  if (!v.IsObject()) bad(env, "Expected an object of tensors for " + what);
  Napi::Object o = v.As<Napi::Object>();
  Napi::Array keys = o.GetPropertyNames();
  for (uint32_t i = 0; i < keys.Length(); i++) {
    std::string k = keys.Get(i).ToString().Utf8Value();
    if (!validIdentifier(k)) bad(env, "Expected an identifier for the name of " + what + " but received '" + k + "'");
    out.emplace_back(k, wrapTensor(env, o.Get(k), what + "." + k));
  }
  return out;
}

AttributeSpec readAttribute(Napi::Env env, const Napi::Value& v, const std::string& what) {
  if (v.IsString()) return {c10::StringType::get(), c10::IValue(v.As<Napi::String>().Utf8Value())};
  if (v.IsBoolean()) return {c10::BoolType::get(), c10::IValue(v.As<Napi::Boolean>().Value())};
  if (v.IsNumber()) {
    double d = v.As<Napi::Number>().DoubleValue();
    // Integral JS numbers become TorchScript ints (sizes, counts); others floats.
    if (d == static_cast<double>(static_cast<int64_t>(d))) return {c10::IntType::get(), c10::IValue(static_cast<int64_t>(d))};
    return {c10::FloatType::get(), c10::IValue(d)};
  }
  if (v.IsArray()) {
    Napi::Array a = v.As<Napi::Array>();
    std::vector<double> vals;
    bool allInt = true;
    for (uint32_t i = 0; i < a.Length(); i++) {
      Napi::Value e = a.Get(i);
      if (!e.IsNumber()) bad(env, "Expected an array of numbers for " + what);
      double d = e.As<Napi::Number>().DoubleValue();
      allInt = allInt && d == static_cast<double>(static_cast<int64_t>(d));
      vals.push_back(d);
    }
    if (allInt) {
      c10::List<int64_t> l;
      for (double d : vals) l.push_back(static_cast<int64_t>(d));
      return {c10::ListType::ofInts(), c10::IValue(l)};
    }
    c10::List<double> l;
    for (double d : vals) l.push_back(d);
    return {c10::ListType::ofFloats(), c10::IValue(l)};
  }
  bad(env, "Expected a string, number, boolean or number[] for " + what);
}

std::unique_ptr<ModuleSpec> readSpec(Napi::Env env, const Napi::Value& v, const std::string& what, int depth) {
  if (depth > 64) bad(env, "module spec nested too deeply at " + what);
  if (!v.IsObject()) bad(env, "Expected a module spec object for " + what);
  Napi::Object o = v.As<Napi::Object>();
  auto spec = std::make_unique<ModuleSpec>();
  Napi::Value cn = o.Get("className");
  if (!cn.IsString() || !validIdentifier(cn.As<Napi::String>().Utf8Value()))
    bad(env, "Expected an identifier string for " + what + ".className");
  spec->className = cn.As<Napi::String>().Utf8Value();
  Napi::Value src = o.Get("source");
  if (!src.IsString()) bad(env, "Expected TorchScript source string for " + what + ".source");
  spec->source = src.As<Napi::String>().Utf8Value();
  spec->parameters = readTensors(env, o.Get("parameters"), what + ".parameters");
  spec->buffers = readTensors(env, o.Get("buffers"), what + ".buffers");
  Napi::Value attrs = o.Get("attributes");
  if (attrs.IsObject()) {
    Napi::Object ao = attrs.As<Napi::Object>();
    Napi::Array keys = ao.GetPropertyNames();
    for (uint32_t i = 0; i < keys.Length(); i++) {
      std::string k = keys.Get(i).ToString().Utf8Value();
      if (!validIdentifier(k)) bad(env, "Expected an identifier for an attribute name of " + what + " but received '" + k + "'");
      spec->attributes.emplace_back(k, readAttribute(env, ao.Get(k), what + ".attributes." + k));
    }
  }
  Napi::Value subs = o.Get("submodules");
  if (subs.IsObject()) {
    Napi::Object so = subs.As<Napi::Object>();
    Napi::Array keys = so.GetPropertyNames();
    for (uint32_t i = 0; i < keys.Length(); i++) {
      std::string k = keys.Get(i).ToString().Utf8Value();
      if (!validIdentifier(k)) bad(env, "Expected an identifier for a submodule name of " + what + " but received '" + k + "'");
      spec->submodules.emplace_back(k, readSpec(env, so.Get(k), what + ".submodules." + k, depth + 1));
    }
  }
  return spec;
}

torch::jit::Module instantiate(const ModuleSpec& spec, const std::shared_ptr<torch::jit::CompilationUnit>& cu,
                               std::map<std::string, int>& classNames) {
  // Class names must be unique within one compilation unit.
  if (classNames[spec.className]++ > 0) throw std::runtime_error("duplicate className '" + spec.className + "' in the module spec");
  torch::jit::Module m(c10::QualifiedName("__torch__.dfdet." + spec.className), cu, /*shouldMangle=*/false);
  for (const auto& kv : spec.submodules) m.register_module(kv.first, instantiate(*kv.second, cu, classNames));
  // No copies: the module only lives until it is saved, and the JS arrays stay pinned until then.
  for (const auto& kv : spec.parameters) m.register_parameter(kv.first, kv.second.tensor, /*is_buffer=*/false);
  for (const auto& kv : spec.buffers) m.register_buffer(kv.first, kv.second.tensor);
  for (const auto& kv : spec.attributes) m.register_attribute(kv.first, kv.second.type, kv.second.value);
  if (!spec.source.empty()) m.define(spec.source);
  return m;
}

// True when `path` is missing, a regular file, or a symlink to a regular file (or a dangling one).
bool replaceableOutput(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return true;
  if (S_ISREG(st.st_mode)) return true;
  if (!S_ISLNK(st.st_mode)) return false;
  struct stat target;
  if (stat(path.c_str(), &target) != 0) return true;
  return S_ISREG(target.st_mode);
}

class BuildWorker : public PromiseWorker {
 public:
  explicit BuildWorker(Napi::Env env) : PromiseWorker(env, "dfdet.build", ErrorCode::BAD_INPUT) {}
  std::unique_ptr<ModuleSpec> spec;
  std::string outPath;
  torch::jit::ExtraFilesMap extraFiles;

 protected:
  void Run() override {
    auto cu = std::make_shared<torch::jit::CompilationUnit>();
    std::map<std::string, int> names;
    torch::jit::Module m = instantiate(*spec, cu, names);
    m.eval();
    // Never rename over a device, FIFO, socket or directory (or a symlink to one): as root,
    // `-o /dev/null` would replace the device node. lib/output-path.ts checks first with a clearer
    // message; this guards every caller of the addon.
    if (!replaceableOutput(outPath)) {
      Fail(ErrorCode::BAD_INPUT, "Expected a regular file or a new path for the output but " + outPath + " is a device, FIFO, socket or directory");
      return;
    }
    // Write next to the target, then rename: a failed build never leaves a half-written model.
    std::string tmp = outPath + ".tmp-" + std::to_string(reinterpret_cast<uintptr_t>(this));
    try {
      m.save(tmp, extraFiles);
    } catch (...) {
      std::remove(tmp.c_str());
      throw;
    }
    if (std::rename(tmp.c_str(), outPath.c_str()) != 0) {
      std::remove(tmp.c_str());
      throw std::runtime_error("cannot write " + outPath);
    }
  }
  Napi::Value Resolve(Napi::Env env) override { return env.Undefined(); }
};

}  // namespace

Napi::Value BuildModule(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[1].IsString()) throwTyped(env, ErrorCode::BAD_INPUT, "Expected buildModule(spec, outPath: string, options?)");
  return queueWorker(new BuildWorker(env), [&](BuildWorker& w) {
    w.spec = readSpec(env, info[0], "spec", 0);
    w.outPath = info[1].As<Napi::String>().Utf8Value();
    if (info.Length() > 2 && info[2].IsObject()) {
      Napi::Value ef = info[2].As<Napi::Object>().Get("extraFiles");
      if (ef.IsObject()) {
        Napi::Object o = ef.As<Napi::Object>();
        Napi::Array keys = o.GetPropertyNames();
        for (uint32_t i = 0; i < keys.Length(); i++) {
          std::string k = keys.Get(i).ToString().Utf8Value();
          w.extraFiles[k] = o.Get(k).ToString().Utf8Value();
        }
      }
    }
  });
}

}  // namespace dfdet
