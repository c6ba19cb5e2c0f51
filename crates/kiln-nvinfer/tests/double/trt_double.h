// Test double of the TensorRT ABI (not NVIDIA's headers): the public objects, the apiv V-classes
// and the ONNX parser interfaces, declared in slot order from the facts in
// shared/tensorrt-abi.md. TRT_MAJOR (10 or 11) and TRT_MINOR choose the layout.
//
// Every slot the kiln-nvinfer binding does not call is a `reserved_N` filler whose body records
// a "bad slot" event, so a binding that calls a wrong slot is caught. nvinfer.cpp checks at load
// time (kiln_double_check_layout) that every named method sits at the slot the facts give.
#pragma once
#include <cstddef>
#include <cstdint>

#ifndef TRT_MAJOR
#error "define TRT_MAJOR (10 or 11)"
#endif
#ifndef TRT_MINOR
#define TRT_MINOR 0
#endif

extern "C" void kiln_double_bad_slot(char const* cls, int slot);

#define FILL(cls, n) \
    virtual void reserved_##n() noexcept { kiln_double_bad_slot(cls, n); }

namespace nvinfer1 {

struct Dims64 {
    int32_t nbDims;
    int64_t d[8];
};
static_assert(sizeof(Dims64) == 72, "Dims64 is 72 bytes");
using Dims = Dims64;

enum class DataType : int32_t { kFLOAT = 0, kHALF = 1, kINT8 = 2, kINT32 = 3, kBOOL = 4,
    kUINT8 = 5, kFP8 = 6, kBF16 = 7, kINT64 = 8, kINT4 = 9 };
enum class TensorIOMode : int32_t { kNONE = 0, kINPUT = 1, kOUTPUT = 2 };
enum class TensorLocation : int32_t { kDEVICE = 0, kHOST = 1 };
enum class OptProfileSelector : int32_t { kMIN = 0, kOPT = 1, kMAX = 2 };
enum class MemoryPoolType : int32_t { kWORKSPACE = 0 };
enum class ExecutionContextAllocationStrategy : int32_t { kSTATIC = 0, kON_PROFILE_CHANGE = 1,
    kUSER_MANAGED = 2 };
using cudaStream_t = void*;

struct InterfaceInfo {
    char const* kind;
    int32_t major;
    int32_t minor;
};

#if TRT_MAJOR >= 11
class IVersionedInterface {
public:
    virtual int32_t getAPILanguage() const noexcept { return 0; }    // [0]
    virtual InterfaceInfo getInterfaceInfo() const noexcept = 0;      // [1]
    virtual ~IVersionedInterface() noexcept = default;                // [2] D1, [3] D0
};
class ILogger : public IVersionedInterface {
public:
    enum class Severity : int32_t { kINTERNAL_ERROR = 0, kERROR = 1, kWARNING = 2, kINFO = 3,
        kVERBOSE = 4 };
    virtual void log(Severity severity, char const* msg) noexcept = 0;  // [4]
};
#else
class ILogger {
public:
    enum class Severity : int32_t { kINTERNAL_ERROR = 0, kERROR = 1, kWARNING = 2, kINFO = 3,
        kVERBOSE = 4 };
    virtual void log(Severity severity, char const* msg) noexcept = 0;  // [0]
    virtual ~ILogger() noexcept = default;                              // [1] D1, [2] D0
};
#endif

class IBuilder;
class IBuilderConfig;
class INetworkDefinition;
class IOptimizationProfile;
class IHostMemory;
class IRuntime;
class ICudaEngine;
class IExecutionContext;
class ITensor;

namespace apiv {

class VRoot {
public:
    virtual ~VRoot() noexcept = default;  // [0] D1, [1] D0
};

class VHostMemory : public VRoot {
public:
    virtual void* data() const noexcept = 0;          // 2
    virtual std::size_t size() const noexcept = 0;    // 3
    virtual DataType type() const noexcept = 0;       // 4
};

class VTensor : public VRoot {
public:
    virtual void setName(char const* name) noexcept = 0;   // 2
    virtual char const* getName() const noexcept = 0;      // 3
    virtual void setDimensions(Dims const& d) noexcept = 0;  // 4
    virtual Dims getDimensions() const noexcept = 0;       // 5
#if TRT_MAJOR >= 11
    virtual DataType getType() const noexcept = 0;         // 6
    virtual bool isNetworkInput() const noexcept = 0;      // 7
    virtual bool isNetworkOutput() const noexcept = 0;     // 8
#else
    FILL("VTensor", 6)
    virtual DataType getType() const noexcept = 0;         // 7
    FILL("VTensor", 8)
    virtual bool isNetworkInput() const noexcept = 0;      // 9
    virtual bool isNetworkOutput() const noexcept = 0;     // 10
#endif
};

class VNetworkDefinition : public VRoot {
public:
    virtual ITensor* addInput(char const* name, DataType type, Dims const& dims) noexcept = 0;  // 2
    virtual void markOutput(ITensor& tensor) noexcept = 0;                                      // 3
    // Slot 4 is another layer factory in TensorRT; here it is the double parser's private way
    // to make a tensor (the binding never calls it).
    virtual ITensor* doubleAddTensor(char const* name, DataType type, Dims const& dims) noexcept = 0;  // 4
    FILL("VNetworkDefinition", 5) FILL("VNetworkDefinition", 6) FILL("VNetworkDefinition", 7)
    FILL("VNetworkDefinition", 8) FILL("VNetworkDefinition", 9) FILL("VNetworkDefinition", 10)
    FILL("VNetworkDefinition", 11)
    virtual int32_t getNbLayers() const noexcept = 0;            // 12
    virtual void* getLayer(int32_t index) const noexcept = 0;    // 13
    virtual int32_t getNbInputs() const noexcept = 0;            // 14
    virtual ITensor* getInput(int32_t index) const noexcept = 0;   // 15
    virtual int32_t getNbOutputs() const noexcept = 0;           // 16
    virtual ITensor* getOutput(int32_t index) const noexcept = 0;  // 17
#define NF(n) FILL("VNetworkDefinition", n)
    NF(18) NF(19) NF(20) NF(21) NF(22) NF(23) NF(24) NF(25) NF(26) NF(27) NF(28) NF(29)
    NF(30) NF(31) NF(32) NF(33) NF(34) NF(35) NF(36) NF(37) NF(38) NF(39) NF(40) NF(41)
    NF(42) NF(43) NF(44) NF(45) NF(46) NF(47) NF(48) NF(49) NF(50) NF(51) NF(52) NF(53)
    NF(54) NF(55) NF(56) NF(57) NF(58) NF(59)
#if TRT_MAJOR < 11
    NF(60) NF(61) NF(62)
#if TRT_MINOR == 8
    virtual void* addCumulative() noexcept { kiln_double_bad_slot("VNetworkDefinition", 63); return nullptr; }  // 63 on 10.8
#endif
#endif
#undef NF
    virtual IBuilder& getBuilder() const noexcept = 0;           // 63 (10) / 60 (11)
    virtual uint32_t getFlags() const noexcept = 0;              // 64 (10) / 61 (11)
};

class VOptimizationProfile : public VRoot {
public:
    virtual bool setDimensions(char const* name, OptProfileSelector s, Dims const& d) noexcept = 0;  // 2
    virtual Dims getDimensions(char const* name, OptProfileSelector s) const noexcept = 0;           // 3
    FILL("VOptimizationProfile", 4) FILL("VOptimizationProfile", 5) FILL("VOptimizationProfile", 6)
#if TRT_MAJOR < 11
    FILL("VOptimizationProfile", 7) FILL("VOptimizationProfile", 8)
#endif
    virtual bool isValid() const noexcept = 0;  // 9 (10) / 7 (11)
};

#define BF(n) FILL("VBuilderConfig", n)
class VBuilderConfig : public VRoot {
public:
    BF(2) BF(3) BF(4) BF(5)
#if TRT_MAJOR < 11
    BF(6) BF(7)
#endif
    virtual void setFlags(uint32_t flags) noexcept = 0;      // 8 / 6
    virtual uint32_t getFlags() const noexcept = 0;          // 9 / 7
    virtual void clearFlag(int32_t flag) noexcept = 0;       // 10 / 8
    virtual void setFlag(int32_t flag) noexcept = 0;         // 11 / 9
    virtual bool getFlag(int32_t flag) const noexcept = 0;   // 12 / 10
    BF(13) BF(14) BF(15) BF(16) BF(17) BF(18) BF(19) BF(20) BF(21) BF(22) BF(23) BF(24)
    virtual int32_t addOptimizationProfile(IOptimizationProfile const* p) noexcept = 0;  // 25 / 23
    virtual int32_t getNbOptimizationProfiles() const noexcept = 0;                     // 26 / 24
    BF(27) BF(28) BF(29) BF(30) BF(31) BF(32) BF(33)
#if TRT_MAJOR < 11
    BF(34) BF(35) BF(36) BF(37) BF(38) BF(39) BF(40) BF(41) BF(42)
#endif
    virtual void setMemoryPoolLimit(MemoryPoolType pool, std::size_t size) noexcept = 0;  // 43 / 32
    virtual std::size_t getMemoryPoolLimit(MemoryPoolType pool) const noexcept = 0;       // 44 / 33
    virtual void setPreviewFeature(int32_t feature, bool enable) noexcept = 0;            // 45 / 34
    BF(46)
    virtual void setBuilderOptimizationLevel(int32_t level) noexcept = 0;                 // 47 / 36
};
#undef BF

#define BU(n) FILL("VBuilder", n)
class VBuilder : public VRoot {
public:
    BU(2) BU(3) BU(4)
#if TRT_MAJOR < 11
    BU(5) BU(6)
#endif
    virtual IBuilderConfig* createBuilderConfig() noexcept = 0;                 // 7 / 5
    virtual INetworkDefinition* createNetworkV2(uint32_t flags) noexcept = 0;   // 8 / 6
    virtual IOptimizationProfile* createOptimizationProfile() noexcept = 0;     // 9 / 7
    BU(10) BU(11) BU(12)
#if TRT_MAJOR < 11
    BU(13)
#endif
    virtual IHostMemory* buildSerializedNetwork(INetworkDefinition& n, IBuilderConfig& c) noexcept = 0;  // 14 / 11
    virtual bool isNetworkSupported(INetworkDefinition const& n, IBuilderConfig const& c) const noexcept = 0;  // 15 / 12
    virtual ILogger* getLogger() const noexcept = 0;                            // 16 / 13
    BU(17) BU(18) BU(19)
    virtual ICudaEngine* buildEngineWithConfig(INetworkDefinition& n, IBuilderConfig& c) noexcept = 0;  // 20 / 17
};
#undef BU

#define RF(n) FILL("VRuntime", n)
class VRuntime : public VRoot {
public:
    virtual IRuntime* getPImpl() noexcept = 0;                                          // 2
    virtual ICudaEngine* deserializeCudaEngine(void const* blob, std::size_t size) noexcept = 0;  // 3
    RF(4) RF(5) RF(6) RF(7) RF(8) RF(9)
#if TRT_MAJOR < 11
    RF(10)
#endif
    virtual ILogger* getLogger() const noexcept = 0;       // 11 / 10
    virtual bool setMaxThreads(int32_t n) noexcept = 0;    // 12 / 11
};
#undef RF

#define EF(n) FILL("VCudaEngine", n)
class VCudaEngine : public VRoot {
public:
    virtual ICudaEngine* getPImpl() noexcept = 0;  // 2
    EF(3)
    virtual IHostMemory* serialize() const noexcept = 0;  // 4
    virtual IExecutionContext* createExecutionContext(ExecutionContextAllocationStrategy s) noexcept = 0;  // 5
    EF(6) EF(7)
#if TRT_MAJOR < 11
    EF(8) EF(9)
#endif
    virtual int32_t getNbOptimizationProfiles() const noexcept = 0;  // 10 / 8
    EF(11) EF(12) EF(13) EF(14) EF(15) EF(16)
#if TRT_MAJOR < 11
    EF(17) EF(18)
#endif
    virtual Dims getTensorShape(char const* name) const noexcept = 0;              // 19 / 15
    virtual DataType getTensorDataType(char const* name) const noexcept = 0;       // 20 / 16
    virtual TensorLocation getTensorLocation(char const* name) const noexcept = 0; // 21 / 17
    EF(22)
    virtual TensorIOMode getTensorIOMode(char const* name) const noexcept = 0;     // 23 / 19
    EF(24) EF(25) EF(26) EF(27) EF(28)
    virtual Dims getProfileShape(char const* name, int32_t profile, OptProfileSelector s) const noexcept = 0;  // 29 / 25
    virtual int32_t getNbIOTensors() const noexcept = 0;                           // 30 / 26
    virtual char const* getIOTensorName(int32_t index) const noexcept = 0;         // 31 / 27
    EF(32) EF(33) EF(34) EF(35) EF(36) EF(37) EF(38) EF(39) EF(40) EF(41) EF(42) EF(43)
    EF(44) EF(45) EF(46) EF(47)
#if TRT_MAJOR < 11
    EF(48) EF(49) EF(50) EF(51)
#endif
    virtual int64_t getDeviceMemorySizeV2() const noexcept = 0;                    // 52 / 44
    virtual int64_t getDeviceMemorySizeForProfileV2(int32_t profile) const noexcept = 0;  // 53 / 45
};
#undef EF

#define CF(n) FILL("VExecutionContext", n)
class VExecutionContext : public VRoot {
public:
    virtual IExecutionContext* getPImpl() noexcept = 0;  // 2
    CF(3) CF(4) CF(5) CF(6)
    virtual ICudaEngine const& getEngine() const noexcept = 0;  // 7
    CF(8) CF(9) CF(10) CF(11) CF(12) CF(13) CF(14)
#if TRT_MAJOR < 11
    CF(15)
#endif
    virtual bool executeV2(void* const* bindings) noexcept = 0;                        // 16 / 15
    virtual bool setOptimizationProfileAsync(int32_t index, cudaStream_t s) noexcept = 0;  // 17 / 16
    CF(18) CF(19) CF(20)
    virtual bool setInputShape(char const* name, Dims const& dims) noexcept = 0;      // 21 / 20
    virtual Dims getTensorShape(char const* name) const noexcept = 0;                 // 22 / 21
    CF(23)
    virtual bool setTensorAddress(char const* name, void* data) noexcept = 0;         // 24 / 23
    CF(25) CF(26) CF(27) CF(28) CF(29) CF(30) CF(31) CF(32) CF(33) CF(34) CF(35) CF(36)
    virtual bool enqueueV3(cudaStream_t stream) noexcept = 0;                         // 37 / 36
    CF(38) CF(39) CF(40) CF(41) CF(42) CF(43) CF(44) CF(45) CF(46) CF(47)
    virtual std::size_t updateDeviceMemorySizeForShapes() noexcept = 0;               // 48 / 47
    virtual void setDeviceMemoryV2(void* memory, int64_t size) noexcept = 0;          // 49 / 48
};
#undef CF

}  // namespace apiv

// Public objects: { vptr, mImpl }; vtable [0] D1, [1] D0.
class INoCopy {
public:
    virtual ~INoCopy() noexcept = default;
};

#define PUBLIC_CLASS(Name, V)                                  \
    class Name : public INoCopy {                              \
    public:                                                    \
        explicit Name(apiv::V* impl) noexcept : mImpl(impl) {} \
        ~Name() noexcept override;                             \
        apiv::V* mImpl;                                        \
    };
PUBLIC_CLASS(IHostMemory, VHostMemory)
PUBLIC_CLASS(IBuilder, VBuilder)
PUBLIC_CLASS(IBuilderConfig, VBuilderConfig)
PUBLIC_CLASS(INetworkDefinition, VNetworkDefinition)
PUBLIC_CLASS(IOptimizationProfile, VOptimizationProfile)
PUBLIC_CLASS(IRuntime, VRuntime)
PUBLIC_CLASS(ICudaEngine, VCudaEngine)
PUBLIC_CLASS(IExecutionContext, VExecutionContext)
PUBLIC_CLASS(ITensor, VTensor)
#undef PUBLIC_CLASS

}  // namespace nvinfer1

namespace nvonnxparser {

class IParserError {
public:
    virtual int32_t code() const = 0;               // 0
    virtual char const* desc() const = 0;           // 1
    virtual char const* file() const = 0;           // 2
    virtual int32_t line() const = 0;               // 3
    virtual char const* func() const = 0;           // 4
    virtual int32_t node() const = 0;               // 5
    virtual char const* nodeName() const = 0;       // 6
    virtual char const* nodeOperator() const = 0;   // 7
    FILL("IParserError", 8) FILL("IParserError", 9)
    virtual ~IParserError() = default;               // 10 D1, 11 D0
};

class IParser {
public:
    virtual bool parse(void const* data, std::size_t size, char const* path) = 0;  // 0
    virtual bool parseFromFile(char const* file, int verbosity) = 0;               // 1
#if TRT_MAJOR < 11
    FILL("IParser", 2) FILL("IParser", 3)
#endif
    virtual bool supportsOperator(char const* op) const = 0;       // 4 / 2
    virtual int getNbErrors() const = 0;                           // 5 / 3
    virtual IParserError const* getError(int index) const = 0;     // 6 / 4
    virtual void clearErrors() = 0;                                // 7 / 5
    virtual ~IParser() = default;                                  // 8 / 6 D1, 9 / 7 D0
};

}  // namespace nvonnxparser
