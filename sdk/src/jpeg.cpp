// JPEG decoding with libjpeg (libjpeg62-turbo), declared in ktf/image.h.
#include <jpeglib.h>

#include <csetjmp>
#include <cstdio>

#include <ktf/error.h>
#include <ktf/image.h>

namespace ktf {
namespace {

struct ErrorManager {
  jpeg_error_mgr pub;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void on_error(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<ErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

void on_message(j_common_ptr, int) {}  // no warnings on stderr

}  // namespace

bool is_jpeg(std::string_view data) {
  return data.size() >= 3 && static_cast<unsigned char>(data[0]) == 0xFF &&
         static_cast<unsigned char>(data[1]) == 0xD8 && static_cast<unsigned char>(data[2]) == 0xFF;
}

torch::Tensor decode_jpeg(std::string_view data, const std::string& context, int channels) {
  KTF_CHECK(channels == 0 || channels == 1 || channels == 3,
            "decode_jpeg: channels must be 0, 1 or 3, got ", channels);
  jpeg_decompress_struct cinfo;
  ErrorManager err;
  err.message[0] = '\0';
  cinfo.err = jpeg_std_error(&err.pub);
  err.pub.error_exit = on_error;
  err.pub.emit_message = on_message;
  torch::Tensor out;
  // No C++ object with a destructor may be created between setjmp and a longjmp to it.
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    throw Error(context + ": cannot decode JPEG (" + err.message + ")");
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, reinterpret_cast<const unsigned char*>(data.data()),
               static_cast<unsigned long>(data.size()));
  jpeg_read_header(&cinfo, TRUE);
  int c = channels ? channels : (cinfo.num_components == 1 ? 1 : 3);
  // Checked before allocating: a few hundred bytes may declare 65000 x 65000 pixels.
  const uint64_t bytes =
      uint64_t{cinfo.image_width} * cinfo.image_height * static_cast<uint64_t>(c);
  if (bytes > kMaxDecodedImageBytes) {
    const std::string size =
        std::to_string(cinfo.image_width) + " x " + std::to_string(cinfo.image_height);
    jpeg_destroy_decompress(&cinfo);
    throw Error(context + ": cannot decode JPEG (" + size + " pixels: more than the " +
                std::to_string(kMaxDecodedImageBytes >> 20) + " MiB an image may decode to)");
  }
  cinfo.out_color_space = c == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_start_decompress(&cinfo);
  out = torch::empty({static_cast<int64_t>(cinfo.output_height),
                      static_cast<int64_t>(cinfo.output_width), static_cast<int64_t>(c)},
                     torch::kUInt8);
  auto* base = out.data_ptr<uint8_t>();
  size_t stride = static_cast<size_t>(cinfo.output_width) * c;
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = base + stride * cinfo.output_scanline;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return out;
}

torch::Tensor decode_image(std::string_view data, const std::string& context, int channels) {
  if (is_jpeg(data)) return decode_jpeg(data, context, channels == 4 ? 3 : channels);
  return decode_png(data, context, channels);
}

}  // namespace ktf
