// Arena figures of one model on a host build of TFLM, for bench/arena_model.py.
// Reads the .tflite named by TD_PROBE_MODEL; prints one JSON object: arena_used_bytes()
// of a plain MicroInterpreter, and the head, tail and recorded parts of a recording one.
// Started through the ESP-IDF stand-in's main(), like the firmware.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/micro/recording_micro_interpreter.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace {
alignas(16) uint8_t arena[1 << 21];

void register_ops(tflite::MicroMutableOpResolver<24> &r) {
  r.AddConv2D();
  r.AddDepthwiseConv2D();
  r.AddFullyConnected();
  r.AddMaxPool2D();
  r.AddAveragePool2D();
  r.AddMean();
  r.AddSoftmax();
  r.AddReshape();
  r.AddAdd();
  r.AddMul();
  r.AddQuantize();
  r.AddDequantize();
  r.AddPad();
  r.AddExpandDims();
  r.AddSqueeze();
  r.AddShape();
  r.AddStridedSlice();
  r.AddPack();
  r.AddConcatenation();
  r.AddRelu();
  r.AddRelu6();
  r.AddLogistic();
}

const struct {
  tflite::RecordedAllocationType type;
  const char *name;
} kRecorded[] = {
    {tflite::RecordedAllocationType::kTfLiteEvalTensorData, "eval_tensors"},
    {tflite::RecordedAllocationType::kPersistentTfLiteTensorData, "persistent_tensors"},
    {tflite::RecordedAllocationType::kPersistentTfLiteTensorQuantizationData, "persistent_quantization"},
    {tflite::RecordedAllocationType::kPersistentBufferData, "persistent_buffers"},
    {tflite::RecordedAllocationType::kNodeAndRegistrationArray, "node_and_registrations"},
};
}  // namespace

extern "C" void app_main(void) {
  const char *path = getenv("TD_PROBE_MODEL");
  FILE *file = path ? fopen(path, "rb") : nullptr;
  if (file == nullptr) {
    fprintf(stderr, "set TD_PROBE_MODEL to a .tflite file\n");
    exit(2);
  }
  std::vector<uint8_t> bytes;
  uint8_t chunk[4096];
  for (size_t n; (n = fread(chunk, 1, sizeof(chunk), file)) > 0;) bytes.insert(bytes.end(), chunk, chunk + n);
  fclose(file);
  // The flatbuffer, 16-byte aligned as in the firmware.
  uint8_t *aligned = static_cast<uint8_t *>(aligned_alloc(16, (bytes.size() + 15) / 16 * 16));
  memcpy(aligned, bytes.data(), bytes.size());
  const tflite::Model *model = tflite::GetModel(aligned);
  static tflite::MicroMutableOpResolver<24> resolver;
  register_ops(resolver);
  size_t plain_used;
  {
    tflite::MicroInterpreter interpreter(model, resolver, arena, sizeof(arena));
    if (interpreter.AllocateTensors() != kTfLiteOk) {
      fprintf(stderr, "AllocateTensors failed\n");
      exit(1);
    }
    plain_used = interpreter.arena_used_bytes();
  }
  tflite::RecordingMicroInterpreter recording(model, resolver, arena, sizeof(arena));
  recording.AllocateTensors();
  const tflite::RecordingMicroAllocator &allocator = recording.GetMicroAllocator();
  printf("{\"pointer_bytes\": %u, \"arena_used_bytes\": %lu, \"recording_used_bytes\": %lu, "
         "\"head_bytes\": %lu, \"tail_bytes\": %lu",
         (unsigned)sizeof(void *), (unsigned long)plain_used, (unsigned long)recording.arena_used_bytes(),
         (unsigned long)allocator.GetSimpleMemoryAllocator()->GetNonPersistentUsedBytes(),
         (unsigned long)allocator.GetSimpleMemoryAllocator()->GetPersistentUsedBytes());
  for (const auto &r : kRecorded) {
    tflite::RecordedAllocation a = allocator.GetRecordedAllocation(r.type);
    printf(", \"%s\": {\"used\": %lu, \"requested\": %lu, \"count\": %lu}", r.name, (unsigned long)a.used_bytes,
           (unsigned long)a.requested_bytes, (unsigned long)a.count);
  }
  printf("}\n");
  exit(0);
}
