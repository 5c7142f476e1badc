pub use kelf;
