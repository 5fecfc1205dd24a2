#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| pb_fuzz_checks::espi_xml(data));
