"""End-to-end encrypted cloud storage: records, vectors and backups (SPEC §9).

The desktop encrypts before it uploads; the server stores opaque bytes it can
never read, checks their SHA-256 checksums and the plan's quota, and streams
them. Blobs live on the local disk or in an S3-compatible bucket
(`app.storage.blobs`); PostgreSQL holds who owns what.
"""
