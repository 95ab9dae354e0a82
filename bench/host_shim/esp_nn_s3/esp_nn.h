/* For host checks of ESP32-S3 firmware: ESP-NN's generic kernels run (the S3's
 * assembly cannot run here), but every kernel asks the arena for the scratch
 * that ESP-NN's S3 kernels ask for, by calling ESP-NN's own S3 size functions.
 * So the host build fails to allocate exactly where an S3 would. */
#include_next <esp_nn.h>

#ifdef __cplusplus
extern "C" {
#endif
int esp_nn_get_conv_scratch_size_esp32s3(const data_dims_t *input_dims, const data_dims_t *filter_dims,
                                         const data_dims_t *output_dims, const conv_params_t *conv_params);
int esp_nn_get_depthwise_conv_scratch_size_esp32s3(const data_dims_t *input_dims, const data_dims_t *filter_dims,
                                                   const data_dims_t *output_dims,
                                                   const dw_conv_params_t *conv_params);
int32_t esp_nn_get_softmax_scratch_size_esp32s3(const int32_t width, const int32_t height);
#ifdef __cplusplus
}
#endif

#undef esp_nn_get_conv_scratch_size
#undef esp_nn_get_depthwise_conv_scratch_size
#undef esp_nn_get_softmax_scratch_size
#define esp_nn_get_conv_scratch_size esp_nn_get_conv_scratch_size_esp32s3
#define esp_nn_get_depthwise_conv_scratch_size esp_nn_get_depthwise_conv_scratch_size_esp32s3
#define esp_nn_get_softmax_scratch_size esp_nn_get_softmax_scratch_size_esp32s3
