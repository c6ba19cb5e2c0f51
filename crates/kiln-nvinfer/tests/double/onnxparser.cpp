// The libnvonnxparser test double. It reads a small text stand-in for ONNX (the double cannot
// decode protobuf), builds the network through the public objects' V-class slots, and reports
// errors with node index, name and operator like the real parser:
//
//   kiln-double-onnx
//   input <name> <dtype> <nbDims> <d...>
//   output <name> <dtype> <nbDims> <d...>
//   node <name> <op>            (a supported node)
//   unsupported <name> <op>     (a node the parser rejects)
#include <fstream>
#include <iterator>
#include <vector>

#include "common.h"

using namespace nvinfer1;
using dbl::Sev;

namespace {

struct ErrorImpl final : nvonnxparser::IParserError {
    int32_t mCode;
    std::string mDesc, mNodeName, mNodeOp;
    int32_t mNode;
    int32_t code() const override { return mCode; }
    char const* desc() const override { return mDesc.c_str(); }
    char const* file() const override { return "onnxparser.cpp"; }
    int32_t line() const override { return 42; }
    char const* func() const override { return "parseGraph"; }
    int32_t node() const override { return mNode; }
    char const* nodeName() const override { return mNodeName.c_str(); }
    char const* nodeOperator() const override { return mNodeOp.c_str(); }
};

struct ParserImpl final : nvonnxparser::IParser {
    INetworkDefinition* net;
    ILogger* logger;
    std::vector<ErrorImpl> errors;
    ParserImpl(INetworkDefinition* n, ILogger* l) : net(n), logger(l) {}
    ~ParserImpl() override { dbl::log(logger, Sev::kVERBOSE, "double: destroy IParser"); }

    void fail(int32_t code, std::string desc, int32_t node = -1, std::string name = "", std::string op = "") {
        dbl::log(logger, Sev::kERROR, "double parser: " + desc);
        errors.push_back(ErrorImpl{});
        auto& e = errors.back();
        e.mCode = code;
        e.mDesc = std::move(desc);
        e.mNode = node;
        e.mNodeName = std::move(name);
        e.mNodeOp = std::move(op);
    }

    bool parse(void const* data, std::size_t size, char const* path) override {
        std::string text(static_cast<char const*>(data), data ? size : 0);
        std::istringstream in(text);
        std::string line;
        if (!std::getline(in, line) || line != "kiln-double-onnx") {
            fail(4, std::string("could not parse the model") + (path ? std::string(" ") + path : "") +
                        " (the double reads only its text stand-in for ONNX)");
            return false;
        }
        int nodes = 0;
        int lineNo = 1;
        while (std::getline(in, line)) {
            ++lineNo;
            std::istringstream ls(line);
            std::string kind, name;
            if (!(ls >> kind)) continue;
            if (kind == "input" || kind == "output") {
                int dt;
                Dims d;
                if (!(ls >> name >> dt) || !dbl::read_dims(ls, d)) {
                    fail(1, "line " + std::to_string(lineNo) + ": bad tensor line");
                    continue;
                }
                if (kind == "input") {
                    net->mImpl->addInput(name.c_str(), DataType(dt), d);
                } else {
                    ITensor* t = net->mImpl->doubleAddTensor(name.c_str(), DataType(dt), d);
                    net->mImpl->markOutput(*t);
                }
            } else if (kind == "node" || kind == "unsupported") {
                std::string op;
                ls >> name >> op;
                if (kind == "unsupported")
                    fail(8, "No importer registered for op: " + op, nodes, name, op);
                ++nodes;
            } else {
                fail(1, "line " + std::to_string(lineNo) + ": unknown entry '" + kind + "'");
            }
        }
        return errors.empty();
    }
    bool parseFromFile(char const* file, int verbosity) override {
        dbl::log(logger, Sev::kINFO, "double parser: reading " + std::string(file ? file : "?") +
                                          " at verbosity " + std::to_string(verbosity));
        std::ifstream f(file ? file : "", std::ios::binary);
        if (!f) {
            fail(1, std::string("failed to open file: ") + (file ? file : "?"));
            return false;
        }
        std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
        return parse(bytes.data(), bytes.size(), file);
    }
    bool supportsOperator(char const* op) const override {
        return op && std::string(op) != "KilnUnsupported";
    }
    int getNbErrors() const override { return int(errors.size()); }
    nvonnxparser::IParserError const* getError(int i) const override {
        return i >= 0 && size_t(i) < errors.size() ? &errors[i] : nullptr;
    }
    void clearErrors() override { errors.clear(); }
};

}  // namespace

#define EXPORT extern "C" __attribute__((visibility("default")))

EXPORT void kiln_double_bad_slot(char const* cls, int slot) {
    dbl::event(std::string("BAD-SLOT ") + cls + " " + std::to_string(slot));
}

EXPORT void* createNvOnnxParser_INTERNAL(void* network, void* logger, int version) {
    auto* l = static_cast<ILogger*>(logger);
    if (!network || version != 100) {
        dbl::log(l, Sev::kERROR, "double parser: bad network or parser API version " + std::to_string(version));
        return nullptr;
    }
    return static_cast<nvonnxparser::IParser*>(new ParserImpl(static_cast<INetworkDefinition*>(network), l));
}

EXPORT int getNvOnnxParserVersion() { return TRT_MAJOR * 10000 + TRT_MINOR * 100; }

EXPORT int kiln_double_check_parser_layout(char* buf, size_t cap) {
    dbl::LayoutCheck c;
    using nvonnxparser::IParser;
    using nvonnxparser::IParserError;
    c.at("IParser::parse", &IParser::parse, 0);
    c.at("IParser::parseFromFile", &IParser::parseFromFile, 1);
    c.at("IParser::supportsOperator", &IParser::supportsOperator, PICK(4, 2));
    c.at("IParser::getNbErrors", &IParser::getNbErrors, PICK(5, 3));
    c.at("IParser::getError", &IParser::getError, PICK(6, 4));
    c.at("IParser::clearErrors", &IParser::clearErrors, PICK(7, 5));
    c.at("IParserError::code", &IParserError::code, 0);
    c.at("IParserError::desc", &IParserError::desc, 1);
    c.at("IParserError::file", &IParserError::file, 2);
    c.at("IParserError::line", &IParserError::line, 3);
    c.at("IParserError::func", &IParserError::func, 4);
    c.at("IParserError::node", &IParserError::node, 5);
    c.at("IParserError::nodeName", &IParserError::nodeName, 6);
    c.at("IParserError::nodeOperator", &IParserError::nodeOperator, 7);
    if (buf && cap) std::snprintf(buf, cap, "%s", c.report.c_str());
    return c.bad;
}
