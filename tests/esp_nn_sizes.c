/* Calls ESP-NN's own S3 scratch-size functions for shapes read from stdin, one per line:
 *   conv|dw in_w in_h in_ch filter_w filter_h out_w out_h out_ch stride_w stride_h pad_w pad_h ch_mult
 * and prints each size on its own line. Linked with ESP-NN's sources by tests/test_kernels.py. */
#include <stdio.h>
#include <string.h>

#include "esp_nn_defs.h"

int esp_nn_get_conv_scratch_size_esp32s3(const data_dims_t *input_dims, const data_dims_t *filter_dims,
                                         const data_dims_t *output_dims, const conv_params_t *conv_params);
int esp_nn_get_depthwise_conv_scratch_size_esp32s3(const data_dims_t *input_dims, const data_dims_t *filter_dims,
                                                   const data_dims_t *output_dims,
                                                   const dw_conv_params_t *conv_params);

int main(void) {
  char kind[8];
  int v[13];
  while (scanf("%7s %d %d %d %d %d %d %d %d %d %d %d %d %d", kind, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
               &v[6], &v[7], &v[8], &v[9], &v[10], &v[11], &v[12]) == 14) {
    data_dims_t input = {0}, filter = {0}, output = {0};
    input.width = v[0], input.height = v[1], input.channels = v[2], input.extra = 1;
    filter.width = v[3], filter.height = v[4], filter.channels = v[2];
    output.width = v[5], output.height = v[6], output.channels = v[7], output.extra = 1;
    if (strcmp(kind, "conv") == 0) {
      conv_params_t params;
      memset(&params, 0, sizeof(params));
      params.stride.width = v[8], params.stride.height = v[9];
      params.padding.width = v[10], params.padding.height = v[11];
      printf("%d\n", esp_nn_get_conv_scratch_size_esp32s3(&input, &filter, &output, &params));
    } else {
      dw_conv_params_t params;
      memset(&params, 0, sizeof(params));
      params.stride.width = v[8], params.stride.height = v[9];
      params.padding.width = v[10], params.padding.height = v[11];
      params.ch_mult = v[12];
      printf("%d\n", esp_nn_get_depthwise_conv_scratch_size_esp32s3(&input, &filter, &output, &params));
    }
  }
  return 0;
}
