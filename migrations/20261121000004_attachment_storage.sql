-- Files are read in chunks with substring(); uncompressed out-of-line storage lets each chunk
-- be read without decompressing the whole value (PDFs and images are compressed already).
ALTER TABLE altinn_outbox.attachment ALTER COLUMN content SET STORAGE EXTERNAL;
