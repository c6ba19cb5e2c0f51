//! The two slot tables, chosen by `getInferLibMajorVersion()`. A slot carries the minor
//! version that introduced it; [`crate::ffi`] refuses a slot newer than the loaded library.

/// One vtable slot: index into the array the vptr points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    pub index: usize,
    /// Lowest minor version of the table's major that has it.
    pub since_minor: u32,
    pub name: &'static str,
}

const fn s(index: usize, name: &'static str) -> Slot {
    Slot {
        index,
        since_minor: 0,
        name,
    }
}

const fn since(index: usize, since_minor: u32, name: &'static str) -> Slot {
    Slot {
        index,
        since_minor,
        name,
    }
}

/// Every slot the binding calls.
#[derive(Debug)]
pub(crate) struct Table {
    pub major: u32,
    /// The newest minor this table was written for (the factories' version argument).
    pub max_minor: u32,
    pub host_data: Slot,
    pub host_size: Slot,
    pub builder_create_config: Slot,
    pub builder_create_network: Slot,
    pub builder_create_profile: Slot,
    pub builder_build_serialized: Slot,
    pub builder_get_logger: Slot,
    pub config_set_flag: Slot,
    pub config_get_flag: Slot,
    pub config_add_profile: Slot,
    pub config_set_pool_limit: Slot,
    pub config_set_opt_level: Slot,
    pub network_get_nb_inputs: Slot,
    pub network_get_input: Slot,
    pub network_get_nb_outputs: Slot,
    pub network_get_output: Slot,
    pub network_get_builder: Slot,
    pub profile_set_dims: Slot,
    pub profile_is_valid: Slot,
    pub tensor_get_name: Slot,
    pub tensor_get_dims: Slot,
    pub tensor_get_type: Slot,
    pub runtime_get_pimpl: Slot,
    pub runtime_deserialize: Slot,
    pub runtime_get_logger: Slot,
    pub engine_get_pimpl: Slot,
    pub engine_create_context: Slot,
    pub engine_nb_profiles: Slot,
    pub engine_tensor_shape: Slot,
    pub engine_tensor_dtype: Slot,
    pub engine_tensor_io_mode: Slot,
    pub engine_profile_shape: Slot,
    pub engine_nb_io: Slot,
    pub engine_io_name: Slot,
    pub engine_device_memory_v2: Slot,
    pub context_get_pimpl: Slot,
    pub context_get_engine: Slot,
    pub context_set_input_shape: Slot,
    pub context_tensor_shape: Slot,
    pub context_set_tensor_address: Slot,
    pub context_enqueue_v3: Slot,
    pub parser_parse: Slot,
    pub parser_parse_file: Slot,
    pub parser_nb_errors: Slot,
    pub parser_get_error: Slot,
    pub parser_delete: Slot,
    /// ILogger: index of `log` (the other slots follow from the major).
    pub logger_log: usize,
    /// BuilderFlag values (None: the major has no such flag).
    pub flag_fp16: Option<i32>,
    pub flag_int8: Option<i32>,
    pub flag_bf16: Option<i32>,
    pub flag_tf32: Option<i32>,
}

/// IParserError slots (both majors).
pub(crate) mod parser_error {
    pub const CODE: usize = 0;
    pub const DESC: usize = 1;
    pub const FILE: usize = 2;
    pub const LINE: usize = 3;
    pub const FUNC: usize = 4;
    pub const NODE: usize = 5;
    pub const NODE_NAME: usize = 6;
    pub const NODE_OPERATOR: usize = 7;
}

/// Public objects: `[1]` is the deleting destructor.
pub(crate) const PUBLIC_DELETE: usize = 1;

pub(crate) static TRT10: Table = Table {
    major: 10,
    max_minor: 16,
    host_data: s(2, "IHostMemory::data"),
    host_size: s(3, "IHostMemory::size"),
    builder_create_config: s(7, "IBuilder::createBuilderConfig"),
    builder_create_network: s(8, "IBuilder::createNetworkV2"),
    builder_create_profile: s(9, "IBuilder::createOptimizationProfile"),
    builder_build_serialized: s(14, "IBuilder::buildSerializedNetwork"),
    builder_get_logger: s(16, "IBuilder::getLogger"),
    config_set_flag: s(11, "IBuilderConfig::setFlag"),
    config_get_flag: s(12, "IBuilderConfig::getFlag"),
    config_add_profile: s(25, "IBuilderConfig::addOptimizationProfile"),
    config_set_pool_limit: s(43, "IBuilderConfig::setMemoryPoolLimit"),
    config_set_opt_level: s(47, "IBuilderConfig::setBuilderOptimizationLevel"),
    network_get_nb_inputs: s(14, "INetworkDefinition::getNbInputs"),
    network_get_input: s(15, "INetworkDefinition::getInput"),
    network_get_nb_outputs: s(16, "INetworkDefinition::getNbOutputs"),
    network_get_output: s(17, "INetworkDefinition::getOutput"),
    network_get_builder: s(63, "INetworkDefinition::getBuilder"),
    profile_set_dims: s(2, "IOptimizationProfile::setDimensions"),
    profile_is_valid: s(9, "IOptimizationProfile::isValid"),
    tensor_get_name: s(3, "ITensor::getName"),
    tensor_get_dims: s(5, "ITensor::getDimensions"),
    tensor_get_type: s(7, "ITensor::getType"),
    runtime_get_pimpl: s(2, "IRuntime::getPImpl"),
    runtime_deserialize: s(3, "IRuntime::deserializeCudaEngine"),
    runtime_get_logger: s(11, "IRuntime::getLogger"),
    engine_get_pimpl: s(2, "ICudaEngine::getPImpl"),
    engine_create_context: s(5, "ICudaEngine::createExecutionContext"),
    engine_nb_profiles: s(10, "ICudaEngine::getNbOptimizationProfiles"),
    engine_tensor_shape: s(19, "ICudaEngine::getTensorShape"),
    engine_tensor_dtype: s(20, "ICudaEngine::getTensorDataType"),
    engine_tensor_io_mode: s(23, "ICudaEngine::getTensorIOMode"),
    engine_profile_shape: s(29, "ICudaEngine::getProfileShape"),
    engine_nb_io: s(30, "ICudaEngine::getNbIOTensors"),
    engine_io_name: s(31, "ICudaEngine::getIOTensorName"),
    engine_device_memory_v2: since(52, 1, "ICudaEngine::getDeviceMemorySizeV2"),
    context_get_pimpl: s(2, "IExecutionContext::getPImpl"),
    context_get_engine: s(7, "IExecutionContext::getEngine"),
    context_set_input_shape: s(21, "IExecutionContext::setInputShape"),
    context_tensor_shape: s(22, "IExecutionContext::getTensorShape"),
    context_set_tensor_address: s(24, "IExecutionContext::setTensorAddress"),
    context_enqueue_v3: s(37, "IExecutionContext::enqueueV3"),
    parser_parse: s(0, "IParser::parse"),
    parser_parse_file: s(1, "IParser::parseFromFile"),
    parser_nb_errors: s(5, "IParser::getNbErrors"),
    parser_get_error: s(6, "IParser::getError"),
    parser_delete: s(9, "IParser::~IParser (deleting)"),
    logger_log: 0,
    flag_fp16: Some(0),
    flag_int8: Some(1),
    flag_bf16: Some(17),
    flag_tf32: Some(6),
};

pub(crate) static TRT11: Table = Table {
    major: 11,
    max_minor: 1,
    host_data: s(2, "IHostMemory::data"),
    host_size: s(3, "IHostMemory::size"),
    builder_create_config: s(5, "IBuilder::createBuilderConfig"),
    builder_create_network: s(6, "IBuilder::createNetworkV2"),
    builder_create_profile: s(7, "IBuilder::createOptimizationProfile"),
    builder_build_serialized: s(11, "IBuilder::buildSerializedNetwork"),
    builder_get_logger: s(13, "IBuilder::getLogger"),
    config_set_flag: s(9, "IBuilderConfig::setFlag"),
    config_get_flag: s(10, "IBuilderConfig::getFlag"),
    config_add_profile: s(23, "IBuilderConfig::addOptimizationProfile"),
    config_set_pool_limit: s(32, "IBuilderConfig::setMemoryPoolLimit"),
    config_set_opt_level: s(36, "IBuilderConfig::setBuilderOptimizationLevel"),
    network_get_nb_inputs: s(14, "INetworkDefinition::getNbInputs"),
    network_get_input: s(15, "INetworkDefinition::getInput"),
    network_get_nb_outputs: s(16, "INetworkDefinition::getNbOutputs"),
    network_get_output: s(17, "INetworkDefinition::getOutput"),
    network_get_builder: s(60, "INetworkDefinition::getBuilder"),
    profile_set_dims: s(2, "IOptimizationProfile::setDimensions"),
    profile_is_valid: s(7, "IOptimizationProfile::isValid"),
    tensor_get_name: s(3, "ITensor::getName"),
    tensor_get_dims: s(5, "ITensor::getDimensions"),
    tensor_get_type: s(6, "ITensor::getType"),
    runtime_get_pimpl: s(2, "IRuntime::getPImpl"),
    runtime_deserialize: s(3, "IRuntime::deserializeCudaEngine"),
    runtime_get_logger: s(10, "IRuntime::getLogger"),
    engine_get_pimpl: s(2, "ICudaEngine::getPImpl"),
    engine_create_context: s(5, "ICudaEngine::createExecutionContext"),
    engine_nb_profiles: s(8, "ICudaEngine::getNbOptimizationProfiles"),
    engine_tensor_shape: s(15, "ICudaEngine::getTensorShape"),
    engine_tensor_dtype: s(16, "ICudaEngine::getTensorDataType"),
    engine_tensor_io_mode: s(19, "ICudaEngine::getTensorIOMode"),
    engine_profile_shape: s(25, "ICudaEngine::getProfileShape"),
    engine_nb_io: s(26, "ICudaEngine::getNbIOTensors"),
    engine_io_name: s(27, "ICudaEngine::getIOTensorName"),
    engine_device_memory_v2: s(44, "ICudaEngine::getDeviceMemorySizeV2"),
    context_get_pimpl: s(2, "IExecutionContext::getPImpl"),
    context_get_engine: s(7, "IExecutionContext::getEngine"),
    context_set_input_shape: s(20, "IExecutionContext::setInputShape"),
    context_tensor_shape: s(21, "IExecutionContext::getTensorShape"),
    context_set_tensor_address: s(23, "IExecutionContext::setTensorAddress"),
    context_enqueue_v3: s(36, "IExecutionContext::enqueueV3"),
    parser_parse: s(0, "IParser::parse"),
    parser_parse_file: s(1, "IParser::parseFromFile"),
    parser_nb_errors: s(3, "IParser::getNbErrors"),
    parser_get_error: s(4, "IParser::getError"),
    parser_delete: s(7, "IParser::~IParser (deleting)"),
    logger_log: 4,
    flag_fp16: None,
    flag_int8: None,
    flag_bf16: None,
    flag_tf32: Some(6),
};

/// The table for a major version, if kiln has one.
pub(crate) fn table(major: u32) -> Option<&'static Table> {
    match major {
        10 => Some(&TRT10),
        11 => Some(&TRT11),
        _ => None,
    }
}
