// The libnvinfer test double: factories, version queries and implementation objects that
// record what the binding asked for. "Building" serialises the network and config as text;
// deserialising parses it back, so introspection round-trips.
#include <map>
#include <memory>
#include <vector>

#include "common.h"

using namespace nvinfer1;
using dbl::Sev;

#ifndef TRT_PATCH
#define TRT_PATCH 0
#endif
#ifndef DOUBLE_REPORT_MAJOR
#define DOUBLE_REPORT_MAJOR TRT_MAJOR
#endif
static constexpr int32_t kLibVersion = TRT_MAJOR * 10000 + TRT_MINOR * 100 + TRT_PATCH;

namespace {
int gLive[8];  // builders, configs, networks, runtimes, engines, contexts, host memories, profiles
enum { kBuilder, kConfig, kNetwork, kRuntime, kEngine, kContext, kHostMem, kProfile };

void order_error(std::string const& what) { dbl::event("ORDER-ERROR " + what); }

struct Destroyed {
    ILogger* logger;
    char const* name;
    int kind;
    Destroyed(ILogger* l, char const* n, int k) : logger(l), name(n), kind(k) { ++gLive[kind]; }
    ~Destroyed() {
        --gLive[kind];
        dbl::event(std::string("destroy ") + name);
        dbl::log(logger, Sev::kVERBOSE, std::string("double: destroy ") + name);
    }
};

bool has_dynamic(Dims const& d) {
    for (int i = 0; i < d.nbDims; ++i)
        if (d.d[i] < 0) return true;
    return false;
}

struct HostMemoryImpl final : apiv::VHostMemory {
    std::string bytes;
    Destroyed tag;
    HostMemoryImpl(ILogger* l, std::string b) : bytes(std::move(b)), tag(l, "IHostMemory", kHostMem) {}
    void* data() const noexcept override { return const_cast<char*>(bytes.data()); }
    std::size_t size() const noexcept override { return bytes.size(); }
    DataType type() const noexcept override { return DataType::kUINT8; }
};

struct TensorImpl final : apiv::VTensor {
    std::string name;
    DataType dtype;
    Dims dims;
    bool input = false, output = false;
    void setName(char const* n) noexcept override { name = n ? n : ""; }
    char const* getName() const noexcept override { return name.c_str(); }
    void setDimensions(Dims const& d) noexcept override { dims = d; }
    Dims getDimensions() const noexcept override { return dims; }
    DataType getType() const noexcept override { return dtype; }
    bool isNetworkInput() const noexcept override { return input; }
    bool isNetworkOutput() const noexcept override { return output; }
};

struct NetworkImpl final : apiv::VNetworkDefinition {
    IBuilder* builder;
    uint32_t flags;
    std::vector<std::unique_ptr<ITensor>> tensors;
    std::vector<ITensor*> inputs, outputs;
    Destroyed tag;
    NetworkImpl(ILogger* l, IBuilder* b, uint32_t f) : builder(b), flags(f), tag(l, "INetworkDefinition", kNetwork) {}
    ~NetworkImpl() override {
        for (auto& t : tensors) delete t->mImpl;
    }
    ITensor* make(char const* name, DataType type, Dims const& dims) {
        auto* impl = new TensorImpl();
        impl->name = name ? name : "";
        impl->dtype = type;
        impl->dims = dims;
        tensors.emplace_back(new ITensor(impl));
        return tensors.back().get();
    }
    ITensor* addInput(char const* name, DataType type, Dims const& dims) noexcept override {
        ITensor* t = make(name, type, dims);
        static_cast<TensorImpl*>(t->mImpl)->input = true;
        inputs.push_back(t);
        return t;
    }
    void markOutput(ITensor& t) noexcept override {
        static_cast<TensorImpl*>(t.mImpl)->output = true;
        outputs.push_back(&t);
    }
    ITensor* doubleAddTensor(char const* name, DataType type, Dims const& dims) noexcept override {
        return make(name, type, dims);
    }
    int32_t getNbLayers() const noexcept override { return 0; }
    void* getLayer(int32_t) const noexcept override { return nullptr; }
    int32_t getNbInputs() const noexcept override { return int32_t(inputs.size()); }
    ITensor* getInput(int32_t i) const noexcept override {
        return i >= 0 && size_t(i) < inputs.size() ? inputs[i] : nullptr;
    }
    int32_t getNbOutputs() const noexcept override { return int32_t(outputs.size()); }
    ITensor* getOutput(int32_t i) const noexcept override {
        return i >= 0 && size_t(i) < outputs.size() ? outputs[i] : nullptr;
    }
    IBuilder& getBuilder() const noexcept override { return *builder; }
    uint32_t getFlags() const noexcept override { return flags; }
};

using ProfileDims = std::map<std::string, Dims[3]>;

struct ProfileImpl final : apiv::VOptimizationProfile {
    ProfileDims dims;
    bool setDimensions(char const* name, OptProfileSelector s, Dims const& d) noexcept override {
        int k = int(s);
        if (!name || k < 0 || k > 2 || d.nbDims < 0 || d.nbDims > 8) return false;
        dims[name][k] = d;
        dbl::event(std::string("profile.set ") + name + " " + std::to_string(k) + " " + dbl::dims_text(d));
        return true;
    }
    Dims getDimensions(char const* name, OptProfileSelector s) const noexcept override {
        auto it = dims.find(name ? name : "");
        int k = int(s);
        if (it == dims.end() || k < 0 || k > 2) return Dims{-1, {}};
        return it->second[k];
    }
    bool isValid() const noexcept override {
        for (auto const& [n, d] : dims) {
            if (d[0].nbDims != d[1].nbDims || d[1].nbDims != d[2].nbDims) return false;
            for (int i = 0; i < d[0].nbDims; ++i)
                if (!(d[0].d[i] <= d[1].d[i] && d[1].d[i] <= d[2].d[i])) return false;
        }
        return !dims.empty();
    }
};

struct ConfigImpl final : apiv::VBuilderConfig {
    uint32_t flags = 0;
    size_t workspace = 0;
    int32_t optLevel = 3;
    std::vector<ProfileDims> profiles;
    Destroyed tag;
    explicit ConfigImpl(ILogger* l) : tag(l, "IBuilderConfig", kConfig) {}
    void setFlags(uint32_t f) noexcept override { flags = f; }
    uint32_t getFlags() const noexcept override { return flags; }
    void clearFlag(int32_t f) noexcept override { flags &= ~(1u << f); }
    void setFlag(int32_t f) noexcept override {
        dbl::event("config.setFlag " + std::to_string(f));
        flags |= (1u << f);
    }
    bool getFlag(int32_t f) const noexcept override { return flags & (1u << f); }
    int32_t addOptimizationProfile(IOptimizationProfile const* p) noexcept override {
        if (!p) return -1;
        auto* impl = static_cast<ProfileImpl const*>(p->mImpl);
        if (!impl->isValid()) return -1;
        profiles.push_back(impl->dims);
        return int32_t(profiles.size() - 1);
    }
    int32_t getNbOptimizationProfiles() const noexcept override { return int32_t(profiles.size()); }
    void setMemoryPoolLimit(MemoryPoolType pool, std::size_t size) noexcept override {
        dbl::event("config.setMemoryPoolLimit " + std::to_string(int(pool)) + " " + std::to_string(size));
        if (pool == MemoryPoolType::kWORKSPACE) workspace = size;
    }
    std::size_t getMemoryPoolLimit(MemoryPoolType) const noexcept override { return workspace; }
    void setPreviewFeature(int32_t, bool) noexcept override {}
    void setBuilderOptimizationLevel(int32_t level) noexcept override {
        dbl::event("config.setBuilderOptimizationLevel " + std::to_string(level));
        optLevel = level;
    }
};

struct BuilderImpl final : apiv::VBuilder {
    ILogger* logger;
    IBuilder* pub = nullptr;
    std::vector<std::unique_ptr<IOptimizationProfile>> profiles;
    Destroyed tag;
    explicit BuilderImpl(ILogger* l) : logger(l), tag(l, "IBuilder", kBuilder) {}
    ~BuilderImpl() override {
        if (gLive[kConfig] || gLive[kNetwork]) order_error("IBuilder destroyed before its config or network");
        for (auto& p : profiles) delete p->mImpl;
    }
    IBuilderConfig* createBuilderConfig() noexcept override { return new IBuilderConfig(new ConfigImpl(logger)); }
    INetworkDefinition* createNetworkV2(uint32_t flags) noexcept override {
        dbl::event("builder.createNetworkV2 " + std::to_string(flags));
        return new INetworkDefinition(new NetworkImpl(logger, pub, flags));
    }
    IOptimizationProfile* createOptimizationProfile() noexcept override {
        profiles.emplace_back(new IOptimizationProfile(new ProfileImpl()));
        return profiles.back().get();
    }
    IHostMemory* buildSerializedNetwork(INetworkDefinition& n, IBuilderConfig& c) noexcept override;
    bool isNetworkSupported(INetworkDefinition const&, IBuilderConfig const&) const noexcept override { return true; }
    ILogger* getLogger() const noexcept override { return logger; }
    ICudaEngine* buildEngineWithConfig(INetworkDefinition&, IBuilderConfig&) noexcept override { return nullptr; }
};

std::string tensor_line(TensorImpl const* t, int mode) {
    return "tensor " + t->name + " " + std::to_string(mode) + " " + std::to_string(int(t->dtype)) + " " +
           dbl::dims_text(t->dims) + "\n";
}

IHostMemory* BuilderImpl::buildSerializedNetwork(INetworkDefinition& n, IBuilderConfig& c) noexcept {
    auto* net = static_cast<NetworkImpl*>(n.mImpl);
    auto* cfg = static_cast<ConfigImpl*>(c.mImpl);
    if (net->outputs.empty()) {
        dbl::log(logger, Sev::kERROR, "double: network has no outputs; mark at least one output");
        return nullptr;
    }
    for (ITensor* t : net->inputs) {
        auto* ti = static_cast<TensorImpl*>(t->mImpl);
        if (!has_dynamic(ti->dims)) continue;
        if (cfg->profiles.empty()) {
            dbl::log(logger, Sev::kERROR, "double: network has dynamic or shape inputs, but no optimization profile has been defined");
            return nullptr;
        }
        for (auto const& p : cfg->profiles)
            if (!p.count(ti->name)) {
                dbl::log(logger, Sev::kERROR, "double: optimization profile lacks dynamic input " + ti->name);
                return nullptr;
            }
    }
    dbl::log(logger, Sev::kINFO, "double: building engine");
    std::ostringstream o;
    o << "KILN-DOUBLE-ENGINE " << TRT_MAJOR << "\n";
    o << "config " << cfg->flags << " " << cfg->workspace << " " << cfg->optLevel << " " << net->flags << "\n";
    for (ITensor* t : net->inputs) o << tensor_line(static_cast<TensorImpl*>(t->mImpl), 1);
    for (ITensor* t : net->outputs) o << tensor_line(static_cast<TensorImpl*>(t->mImpl), 2);
    for (size_t k = 0; k < cfg->profiles.size(); ++k)
        for (auto const& [name, d] : cfg->profiles[k])
            for (int s = 0; s < 3; ++s) o << "profile " << k << " " << name << " " << s << " " << dbl::dims_text(d[s]) << "\n";
    o << "end\n";
    dbl::event("builder.buildSerializedNetwork flags=" + std::to_string(cfg->flags) +
               " workspace=" + std::to_string(cfg->workspace) + " optlevel=" + std::to_string(cfg->optLevel) +
               " profiles=" + std::to_string(cfg->profiles.size()));
    return new IHostMemory(new HostMemoryImpl(logger, o.str()));
}

struct IoTensor {
    std::string name;
    int mode;
    DataType dtype;
    Dims dims;
};

struct EngineImpl;

struct ContextImpl final : apiv::VExecutionContext {
    EngineImpl* engine;
    IExecutionContext* pub = nullptr;
    std::map<std::string, Dims> shapes;
    std::map<std::string, void*> addresses;
    Destroyed tag;
    ContextImpl(ILogger* l, EngineImpl* e) : engine(e), tag(l, "IExecutionContext", kContext) {}
    IExecutionContext* getPImpl() noexcept override;
    ICudaEngine const& getEngine() const noexcept override;
    bool executeV2(void* const*) noexcept override { return false; }
    bool setOptimizationProfileAsync(int32_t i, cudaStream_t) noexcept override { return i == 0; }
    bool setInputShape(char const* name, Dims const& dims) noexcept override;
    Dims getTensorShape(char const* name) const noexcept override;
    bool setTensorAddress(char const* name, void* data) noexcept override;
    bool enqueueV3(cudaStream_t stream) noexcept override;
    std::size_t updateDeviceMemorySizeForShapes() noexcept override { return 4096; }
    void setDeviceMemoryV2(void*, int64_t) noexcept override {}
};

struct RuntimeImpl;

struct EngineImpl final : apiv::VCudaEngine {
    ILogger* logger;
    ICudaEngine* pub = nullptr;
    std::string blob;
    std::vector<IoTensor> io;
    std::vector<ProfileDims> profiles;
    Destroyed tag;
    EngineImpl(ILogger* l) : logger(l), tag(l, "ICudaEngine", kEngine) {}
    ~EngineImpl() override {
        if (gLive[kContext]) order_error("ICudaEngine destroyed before its execution contexts");
    }
    IoTensor const* find(char const* name) const {
        for (auto const& t : io)
            if (name && t.name == name) return &t;
        return nullptr;
    }
    ICudaEngine* getPImpl() noexcept override {
#ifdef DOUBLE_BAD_PIMPL
        return reinterpret_cast<ICudaEngine*>(reinterpret_cast<char*>(pub) + 16);
#else
        return pub;
#endif
    }
    IHostMemory* serialize() const noexcept override { return new IHostMemory(new HostMemoryImpl(logger, blob)); }
    IExecutionContext* createExecutionContext(ExecutionContextAllocationStrategy s) noexcept override {
        dbl::event("engine.createExecutionContext " + std::to_string(int(s)));
        auto* c = new ContextImpl(logger, this);
        c->pub = new IExecutionContext(c);
        return c->pub;
    }
    int32_t getNbOptimizationProfiles() const noexcept override { return int32_t(profiles.size()); }
    Dims getTensorShape(char const* name) const noexcept override {
        auto const* t = find(name);
        return t ? t->dims : Dims{-1, {}};
    }
    DataType getTensorDataType(char const* name) const noexcept override {
        auto const* t = find(name);
        return t ? t->dtype : DataType::kFLOAT;
    }
    TensorLocation getTensorLocation(char const*) const noexcept override { return TensorLocation::kDEVICE; }
    TensorIOMode getTensorIOMode(char const* name) const noexcept override {
        auto const* t = find(name);
        return t ? TensorIOMode(t->mode) : TensorIOMode::kNONE;
    }
    Dims getProfileShape(char const* name, int32_t k, OptProfileSelector s) const noexcept override {
        if (k < 0 || size_t(k) >= profiles.size() || !name) return Dims{-1, {}};
        auto it = profiles[k].find(name);
        int si = int(s);
        if (it == profiles[k].end() || si < 0 || si > 2) return Dims{-1, {}};
        return it->second[si];
    }
    int32_t getNbIOTensors() const noexcept override { return int32_t(io.size()); }
    char const* getIOTensorName(int32_t i) const noexcept override {
        return i >= 0 && size_t(i) < io.size() ? io[i].name.c_str() : nullptr;
    }
    int64_t getDeviceMemorySizeV2() const noexcept override { return 1 << 20; }
    int64_t getDeviceMemorySizeForProfileV2(int32_t k) const noexcept override { return (1 << 20) + k; }
};

IExecutionContext* ContextImpl::getPImpl() noexcept { return pub; }
ICudaEngine const& ContextImpl::getEngine() const noexcept { return *engine->pub; }

bool ContextImpl::setInputShape(char const* name, Dims const& dims) noexcept {
    auto const* t = engine->find(name);
    dbl::event(std::string("context.setInputShape ") + (name ? name : "?") + " " + dbl::dims_text(dims));
    if (!t || t->mode != 1 || dims.nbDims != t->dims.nbDims) {
        dbl::log(engine->logger, Sev::kERROR, std::string("double: setInputShape: bad input ") + (name ? name : "?"));
        return false;
    }
    for (int i = 0; i < dims.nbDims; ++i) {
        int64_t lo = t->dims.d[i], hi = t->dims.d[i];
        if (t->dims.d[i] < 0 && !engine->profiles.empty()) {
            auto it = engine->profiles[0].find(t->name);
            if (it != engine->profiles[0].end()) {
                lo = it->second[0].d[i];
                hi = it->second[2].d[i];
            }
        }
        if (dims.d[i] < lo || dims.d[i] > hi) {
            dbl::log(engine->logger, Sev::kERROR, "double: setInputShape: " + t->name + " outside the profile");
            return false;
        }
    }
    shapes[t->name] = dims;
    return true;
}

Dims ContextImpl::getTensorShape(char const* name) const noexcept {
    auto const* t = engine->find(name);
    if (!t) return Dims{-1, {}};
    if (t->mode == 1) {
        auto it = shapes.find(t->name);
        return it == shapes.end() ? t->dims : it->second;
    }
    Dims d = t->dims;
    Dims first{-1, {}};
    for (auto const& x : engine->io)
        if (x.mode == 1) {
            auto it = shapes.find(x.name);
            if (it != shapes.end()) first = it->second;
            break;
        }
    for (int i = 0; i < d.nbDims; ++i)
        if (d.d[i] < 0) d.d[i] = i < first.nbDims ? first.d[i] : -1;
    return d;
}

bool ContextImpl::setTensorAddress(char const* name, void* data) noexcept {
    if (!engine->find(name)) return false;
    addresses[name] = data;
    return true;
}

bool ContextImpl::enqueueV3(cudaStream_t stream) noexcept {
    std::string line = "context.enqueueV3 stream=" + dbl::ptr_text(stream);
    for (auto const& t : engine->io) {
        auto a = addresses.find(t.name);
        if (a == addresses.end() || !a->second) {
            dbl::log(engine->logger, Sev::kERROR, "double: enqueueV3: no address for tensor " + t.name);
            return false;
        }
        if (t.mode == 1 && has_dynamic(getTensorShape(t.name.c_str()))) {
            dbl::log(engine->logger, Sev::kERROR, "double: enqueueV3: input shape of " + t.name + " not set");
            return false;
        }
        line += " " + t.name + "=" + dbl::ptr_text(a->second);
    }
    dbl::event(line);
    return true;
}

struct RuntimeImpl final : apiv::VRuntime {
    ILogger* logger;
    IRuntime* pub = nullptr;
    Destroyed tag;
    explicit RuntimeImpl(ILogger* l) : logger(l), tag(l, "IRuntime", kRuntime) {}
    ~RuntimeImpl() override {
        if (gLive[kEngine]) order_error("IRuntime destroyed before its engines");
    }
    IRuntime* getPImpl() noexcept override { return pub; }
    ICudaEngine* deserializeCudaEngine(void const* blob, std::size_t size) noexcept override;
    ILogger* getLogger() const noexcept override { return logger; }
    bool setMaxThreads(int32_t) noexcept override { return true; }
};

ICudaEngine* RuntimeImpl::deserializeCudaEngine(void const* blob, std::size_t size) noexcept {
    std::string text(static_cast<char const*>(blob), blob ? size : 0);
    std::istringstream in(text);
    std::string magic;
    int major = 0;
    if (!(in >> magic >> major) || magic != "KILN-DOUBLE-ENGINE") {
        dbl::log(logger, Sev::kERROR, "double: deserializeCudaEngine: the blob is not a serialized engine");
        return nullptr;
    }
    if (major != TRT_MAJOR) {
        dbl::log(logger, Sev::kERROR, "double: deserializeCudaEngine: engine plan built by TensorRT " +
                 std::to_string(major) + ", this is TensorRT " + std::to_string(TRT_MAJOR));
        return nullptr;
    }
    auto* e = new EngineImpl(logger);
    e->blob = text;
    std::string word;
    bool ok = true;
    while (ok && in >> word && word != "end") {
        if (word == "config") {
            uint32_t f, nf;
            size_t ws;
            int ol;
            ok = bool(in >> f >> ws >> ol >> nf);
        } else if (word == "tensor") {
            IoTensor t;
            int dt;
            ok = bool(in >> t.name >> t.mode >> dt) && dbl::read_dims(in, t.dims);
            t.dtype = DataType(dt);
            e->io.push_back(t);
        } else if (word == "profile") {
            size_t k;
            std::string name;
            int s;
            Dims d;
            ok = bool(in >> k >> name >> s) && dbl::read_dims(in, d) && s >= 0 && s < 3 && k < 64;
            if (ok) {
                if (e->profiles.size() <= k) e->profiles.resize(k + 1);
                e->profiles[k][name][s] = d;
            }
        } else {
            ok = false;
        }
    }
    if (!ok) {
        dbl::log(logger, Sev::kERROR, "double: deserializeCudaEngine: corrupt engine plan");
        delete e;
        return nullptr;
    }
    e->pub = new ICudaEngine(e);
    dbl::event("runtime.deserializeCudaEngine " + std::to_string(size) + " bytes");
    return e->pub;
}

bool version_ok(ILogger* logger, int32_t version, char const* what) {
    if (!logger) return false;
#if TRT_MAJOR >= 11
    InterfaceInfo info = logger->getInterfaceInfo();
    if (!info.kind || std::strcmp(info.kind, "ILogger") != 0 || info.major != 1 || logger->getAPILanguage() != 0) {
        dbl::event("BAD-LOGGER interface info");
        return false;
    }
#endif
    if (version / 10000 != TRT_MAJOR || version > kLibVersion) {
        dbl::log(logger, Sev::kERROR, std::string("double: ") + what + ": API version " + std::to_string(version) +
                 " does not match library " + std::to_string(kLibVersion));
        return false;
    }
    return true;
}

}  // namespace

namespace nvinfer1 {
IHostMemory::~IHostMemory() noexcept { delete mImpl; }
IBuilder::~IBuilder() noexcept { delete mImpl; }
IBuilderConfig::~IBuilderConfig() noexcept { delete mImpl; }
INetworkDefinition::~INetworkDefinition() noexcept { delete mImpl; }
IOptimizationProfile::~IOptimizationProfile() noexcept {}
IRuntime::~IRuntime() noexcept { delete mImpl; }
ICudaEngine::~ICudaEngine() noexcept { delete mImpl; }
IExecutionContext::~IExecutionContext() noexcept { delete mImpl; }
ITensor::~ITensor() noexcept {}
}  // namespace nvinfer1

#define EXPORT extern "C" __attribute__((visibility("default")))

EXPORT void kiln_double_bad_slot(char const* cls, int slot) {
    dbl::event(std::string("BAD-SLOT ") + cls + " " + std::to_string(slot));
}

EXPORT void* createInferBuilder_INTERNAL(void* logger, int32_t version) {
    auto* l = static_cast<ILogger*>(logger);
    if (!version_ok(l, version, "createInferBuilder")) return nullptr;
    dbl::event("createInferBuilder " + std::to_string(version));
    dbl::log(l, Sev::kINFO, "double: builder created");
    auto* impl = new BuilderImpl(l);
    impl->pub = new IBuilder(impl);
    return impl->pub;
}

#ifndef DOUBLE_NO_RUNTIME
EXPORT void* createInferRuntime_INTERNAL(void* logger, int32_t version) {
    auto* l = static_cast<ILogger*>(logger);
    if (!version_ok(l, version, "createInferRuntime")) return nullptr;
    dbl::event("createInferRuntime " + std::to_string(version));
    dbl::log(l, Sev::kWARNING, "double: runtime created (a warning, to test severities)");
    auto* impl = new RuntimeImpl(l);
    impl->pub = new IRuntime(impl);
    return impl->pub;
}
#endif

EXPORT int32_t getInferLibVersion() { return kLibVersion; }
EXPORT int32_t getInferLibMajorVersion() { return DOUBLE_REPORT_MAJOR; }
EXPORT int32_t getInferLibMinorVersion() { return TRT_MINOR; }
EXPORT int32_t getInferLibPatchVersion() { return TRT_PATCH; }
EXPORT int32_t getInferLibBuildVersion() { return 7; }
EXPORT void* getLogger() { return nullptr; }

EXPORT size_t kiln_double_events(char* buf, size_t cap) { return dbl::copy_events(buf, cap); }
EXPORT int kiln_double_live_objects(char*, size_t) {
    int n = 0;
    for (int i = 0; i < 8; ++i)
        if (i != kProfile) n += gLive[i];
    return n;
}

// Checks the declarations against the slot numbers of the facts file; returns the number of
// mismatches and writes them to buf.
EXPORT int kiln_double_check_layout(char* buf, size_t cap) {
    dbl::LayoutCheck c;
    using namespace apiv;
    c.at("VHostMemory::data", &VHostMemory::data, 2);
    c.at("VHostMemory::size", &VHostMemory::size, 3);
    c.at("VHostMemory::type", &VHostMemory::type, 4);
    c.at("VBuilder::createBuilderConfig", &VBuilder::createBuilderConfig, PICK(7, 5));
    c.at("VBuilder::createNetworkV2", &VBuilder::createNetworkV2, PICK(8, 6));
    c.at("VBuilder::createOptimizationProfile", &VBuilder::createOptimizationProfile, PICK(9, 7));
    c.at("VBuilder::buildSerializedNetwork", &VBuilder::buildSerializedNetwork, PICK(14, 11));
    c.at("VBuilder::isNetworkSupported", &VBuilder::isNetworkSupported, PICK(15, 12));
    c.at("VBuilder::getLogger", &VBuilder::getLogger, PICK(16, 13));
    c.at("VBuilder::buildEngineWithConfig", &VBuilder::buildEngineWithConfig, PICK(20, 17));
    c.at("VBuilderConfig::setFlags", &VBuilderConfig::setFlags, PICK(8, 6));
    c.at("VBuilderConfig::getFlags", &VBuilderConfig::getFlags, PICK(9, 7));
    c.at("VBuilderConfig::clearFlag", &VBuilderConfig::clearFlag, PICK(10, 8));
    c.at("VBuilderConfig::setFlag", &VBuilderConfig::setFlag, PICK(11, 9));
    c.at("VBuilderConfig::getFlag", &VBuilderConfig::getFlag, PICK(12, 10));
    c.at("VBuilderConfig::addOptimizationProfile", &VBuilderConfig::addOptimizationProfile, PICK(25, 23));
    c.at("VBuilderConfig::getNbOptimizationProfiles", &VBuilderConfig::getNbOptimizationProfiles, PICK(26, 24));
    c.at("VBuilderConfig::setMemoryPoolLimit", &VBuilderConfig::setMemoryPoolLimit, PICK(43, 32));
    c.at("VBuilderConfig::getMemoryPoolLimit", &VBuilderConfig::getMemoryPoolLimit, PICK(44, 33));
    c.at("VBuilderConfig::setPreviewFeature", &VBuilderConfig::setPreviewFeature, PICK(45, 34));
    c.at("VBuilderConfig::setBuilderOptimizationLevel", &VBuilderConfig::setBuilderOptimizationLevel, PICK(47, 36));
    c.at("VNetworkDefinition::addInput", &VNetworkDefinition::addInput, 2);
    c.at("VNetworkDefinition::markOutput", &VNetworkDefinition::markOutput, 3);
    c.at("VNetworkDefinition::getNbLayers", &VNetworkDefinition::getNbLayers, 12);
    c.at("VNetworkDefinition::getLayer", &VNetworkDefinition::getLayer, 13);
    c.at("VNetworkDefinition::getNbInputs", &VNetworkDefinition::getNbInputs, 14);
    c.at("VNetworkDefinition::getInput", &VNetworkDefinition::getInput, 15);
    c.at("VNetworkDefinition::getNbOutputs", &VNetworkDefinition::getNbOutputs, 16);
    c.at("VNetworkDefinition::getOutput", &VNetworkDefinition::getOutput, 17);
    c.at("VNetworkDefinition::getBuilder", &VNetworkDefinition::getBuilder, PICK(TRT_MINOR == 8 ? 64 : 63, 60));
    c.at("VNetworkDefinition::getFlags", &VNetworkDefinition::getFlags, PICK(TRT_MINOR == 8 ? 65 : 64, 61));
    c.at("VOptimizationProfile::setDimensions", &VOptimizationProfile::setDimensions, 2);
    c.at("VOptimizationProfile::getDimensions", &VOptimizationProfile::getDimensions, 3);
    c.at("VOptimizationProfile::isValid", &VOptimizationProfile::isValid, PICK(9, 7));
    c.at("VRuntime::getPImpl", &VRuntime::getPImpl, 2);
    c.at("VRuntime::deserializeCudaEngine", &VRuntime::deserializeCudaEngine, 3);
    c.at("VRuntime::getLogger", &VRuntime::getLogger, PICK(11, 10));
    c.at("VRuntime::setMaxThreads", &VRuntime::setMaxThreads, PICK(12, 11));
    c.at("VCudaEngine::getPImpl", &VCudaEngine::getPImpl, 2);
    c.at("VCudaEngine::serialize", &VCudaEngine::serialize, 4);
    c.at("VCudaEngine::createExecutionContext", &VCudaEngine::createExecutionContext, 5);
    c.at("VCudaEngine::getNbOptimizationProfiles", &VCudaEngine::getNbOptimizationProfiles, PICK(10, 8));
    c.at("VCudaEngine::getTensorShape", &VCudaEngine::getTensorShape, PICK(19, 15));
    c.at("VCudaEngine::getTensorDataType", &VCudaEngine::getTensorDataType, PICK(20, 16));
    c.at("VCudaEngine::getTensorLocation", &VCudaEngine::getTensorLocation, PICK(21, 17));
    c.at("VCudaEngine::getTensorIOMode", &VCudaEngine::getTensorIOMode, PICK(23, 19));
    c.at("VCudaEngine::getProfileShape", &VCudaEngine::getProfileShape, PICK(29, 25));
    c.at("VCudaEngine::getNbIOTensors", &VCudaEngine::getNbIOTensors, PICK(30, 26));
    c.at("VCudaEngine::getIOTensorName", &VCudaEngine::getIOTensorName, PICK(31, 27));
    c.at("VCudaEngine::getDeviceMemorySizeV2", &VCudaEngine::getDeviceMemorySizeV2, PICK(52, 44));
    c.at("VCudaEngine::getDeviceMemorySizeForProfileV2", &VCudaEngine::getDeviceMemorySizeForProfileV2, PICK(53, 45));
    c.at("VExecutionContext::getPImpl", &VExecutionContext::getPImpl, 2);
    c.at("VExecutionContext::getEngine", &VExecutionContext::getEngine, 7);
    c.at("VExecutionContext::executeV2", &VExecutionContext::executeV2, PICK(16, 15));
    c.at("VExecutionContext::setOptimizationProfileAsync", &VExecutionContext::setOptimizationProfileAsync, PICK(17, 16));
    c.at("VExecutionContext::setInputShape", &VExecutionContext::setInputShape, PICK(21, 20));
    c.at("VExecutionContext::getTensorShape", &VExecutionContext::getTensorShape, PICK(22, 21));
    c.at("VExecutionContext::setTensorAddress", &VExecutionContext::setTensorAddress, PICK(24, 23));
    c.at("VExecutionContext::enqueueV3", &VExecutionContext::enqueueV3, PICK(37, 36));
    c.at("VExecutionContext::updateDeviceMemorySizeForShapes", &VExecutionContext::updateDeviceMemorySizeForShapes, PICK(48, 47));
    c.at("VExecutionContext::setDeviceMemoryV2", &VExecutionContext::setDeviceMemoryV2, PICK(49, 48));
    c.at("VTensor::setName", &VTensor::setName, 2);
    c.at("VTensor::getName", &VTensor::getName, 3);
    c.at("VTensor::setDimensions", &VTensor::setDimensions, 4);
    c.at("VTensor::getDimensions", &VTensor::getDimensions, 5);
    c.at("VTensor::getType", &VTensor::getType, PICK(7, 6));
    c.at("VTensor::isNetworkInput", &VTensor::isNetworkInput, PICK(9, 7));
    c.at("VTensor::isNetworkOutput", &VTensor::isNetworkOutput, PICK(10, 8));
    c.at("ILogger::log", &ILogger::log, PICK(0, 4));
#if TRT_MAJOR >= 11
    c.at("IVersionedInterface::getAPILanguage", &IVersionedInterface::getAPILanguage, 0);
    c.at("IVersionedInterface::getInterfaceInfo", &IVersionedInterface::getInterfaceInfo, 1);
#endif
    if (buf && cap) std::snprintf(buf, cap, "%s", c.report.c_str());
    return c.bad;
}
